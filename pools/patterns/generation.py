"""Code generation: ``count`` distinct codes for a pattern, vectorised with numpy.

Codes come from the operating system's CSPRNG (``os.urandom``); each placeholder draws
by rejection sampling, so every character of its set is equally likely.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from couponsite.wording import counted

from .errors import PatternError

if TYPE_CHECKING:
    from .parsing import Pattern

_LOWERCASE = np.arange(256, dtype=np.uint8)  # byte -> byte, with A-Z lowercased
_LOWERCASE[ord("A") : ord("Z") + 1] += 32
_MULTIPLIER = 0x9E3779B97F4A7C15  # odd: multiplying by it is a bijection mod 2**64
_PACKED_MAX = 8  # phrases of up to 8 bytes pack exactly into one uint64
_PHRASE_CHUNK = 1 << 15  # rows per phrase pass: bounds the uint64 temporaries
_ENUMERATE_MAX = 2**24  # shuffling every combination costs at most 128 MiB of sort keys


def estimate_phrase_share(pattern: Pattern, sample: int = 20_000) -> float:
    """Share of combinations (0..1) that contain an excluded phrase, by random sampling.

    The exact figure would need an automaton over the pattern; a sample is enough to
    tell a manager how much the phrases lower the real capacity.
    """
    if not pattern.excluded_phrases or pattern.is_generic:
        return 0.0
    generator = Generator(pattern)
    drawn = generator._draw(sample)
    return 1.0 - float(generator._phrase_free(drawn).mean())


def codes_to_lines(matrix: np.ndarray) -> bytes:
    """A code matrix as newline-terminated ASCII lines, built without per-code objects."""
    rows, length = matrix.shape
    lines = np.empty((rows, length + 1), dtype=np.uint8)
    lines[:, :length] = matrix
    lines[:, length] = ord("\n")
    return lines.tobytes()


def codes_to_str(matrix: np.ndarray) -> list[str]:
    if len(matrix) == 0:
        return []
    return codes_to_lines(matrix)[:-1].decode("ascii").split("\n")


def _poly_hash(data: bytes) -> int:
    """The 64-bit polynomial hash that Generator._contains_phrase gives long windows."""
    value = 0
    for byte in data:
        value = (value * _MULTIPLIER + byte) % 2**64
    return value


class Generator:
    """Vectorised code generation for one pattern."""

    # Draw a little more than needed so one round usually suffices: under the 1% rule
    # at most ~0.5% of a batch collides with itself.
    _OVERDRAW = 1.01

    def __init__(self, pattern: Pattern):
        self.pattern = pattern
        self.length = pattern.length
        # Group placeholder positions by character set: each group is one numpy draw.
        groups: dict[str, list[int]] = {}
        for index, position in enumerate(pattern.positions):
            if position.is_placeholder:
                groups.setdefault(position.alphabet, []).append(index)
        self.groups = [
            (np.frombuffer(alphabet.encode("ascii"), dtype=np.uint8), np.array(cols))
            for alphabet, cols in groups.items()
        ]
        self.template = np.frombuffer(
            "".join(p.alphabet if not p.is_placeholder else "\0" for p in pattern.positions)
            .encode("ascii"),
            dtype=np.uint8,
        )
        # Phrases by length, each as a uint64 key: its bytes packed big-endian when they fit
        # (exact), else their polynomial hash. Codes are ASCII: a phrase that is not, or is
        # longer than the code, never occurs.
        by_length: dict[int, set[int]] = {}
        for phrase in pattern.excluded_phrases:
            if phrase.isascii() and len(phrase) <= self.length:
                data = phrase.encode("ascii")
                packs = len(data) <= _PACKED_MAX
                key = int.from_bytes(data, "big") if packs else _poly_hash(data)
                by_length.setdefault(len(data), set()).add(key)
        self.phrase_keys = [
            (n, np.array(sorted(keys), dtype=np.uint64)) for n, keys in sorted(by_length.items())
        ]
        # Mixed-radix weights give every code a unique integer key when it fits in 64 bits.
        self.int_keys = pattern.combinations < 2**63

    def distinct(self, count: int) -> np.ndarray:
        if count < 0:
            raise PatternError("The number of codes cannot be negative.")
        if count == 0:
            return np.empty((0, self.length), dtype=np.uint8)
        if self.pattern.is_generic:
            if count > 1:
                raise PatternError(
                    "A pattern without placeholders is a generic code: it yields one code only."
                )
            return self.template.reshape(1, self.length).copy()
        total = self.pattern.combinations
        if count > total:
            raise PatternError(
                f"The pattern has only {counted(total, 'combination', 'combinations')}; "
                f"{count:,} distinct codes cannot be made from it."
            )
        if 2 * count > total and total <= _ENUMERATE_MAX:
            return self._enumerate(count)  # drawing would chase the last free codes
        collected = np.empty((0, self.length), dtype=np.uint8)
        rounds = 0
        while len(collected) < count:
            rounds += 1
            if rounds > 200:
                if total <= _ENUMERATE_MAX:
                    return self._enumerate(count)  # succeeds, or says exactly how many exist
                raise self._too_few(count)
            missing = count - len(collected)
            batch = self._draw(max(16, int(missing * self._OVERDRAW)))
            batch = batch[self._phrase_free(batch)]
            collected = self._without_duplicates(np.concatenate([collected, batch]))
        return collected[:count]

    def _too_few(self, count: int, available: int | None = None) -> PatternError:
        total = self.pattern.combinations
        if not self.pattern.excluded_phrases:
            return PatternError(
                f"Could not generate {count:,} distinct codes: the pattern has only "
                f"{counted(total, 'combination', 'combinations')}."
            )
        only = "" if available is None else f" (only {available:,} of {total:,})"
        return PatternError(
            f"Could not generate {count:,} distinct codes: the excluded phrases leave too "
            f"few combinations of this pattern{only}.",
            field="excluded_phrases",
        )

    def _enumerate(self, count: int) -> np.ndarray:
        """``count`` codes of a small space by shuffling all its combinations: each index
        gets a random uint64 from os.urandom, and sorting by those is a CSPRNG shuffle.
        Indices are decoded to codes in that order, without those holding a phrase."""
        total = self.pattern.combinations
        order = np.argsort(np.frombuffer(os.urandom(8 * total), dtype=np.uint64))
        parts, found, start = [], 0, 0
        while found < count and start < total:
            indices = order[start : start + max(count - found, 4096)]
            start += len(indices)
            codes = self._decode(indices)
            parts.append(codes[self._phrase_free(codes)])
            found += len(parts[-1])
        if found < count:  # every combination was seen: ``found`` is exact
            raise self._too_few(count, available=found)
        return np.concatenate(parts)[:count]

    def _decode(self, indices: np.ndarray) -> np.ndarray:
        """Combination numbers as codes: one mixed-radix digit per placeholder position."""
        matrix = np.empty((len(indices), self.length), dtype=np.uint8)
        matrix[:] = self.template
        for alphabet, cols in self.groups:
            for col in cols:
                indices, digit = np.divmod(indices, len(alphabet))
                matrix[:, col] = alphabet[digit]
        return matrix

    def _without_duplicates(self, matrix: np.ndarray) -> np.ndarray:
        """Drop repeated codes, keeping each first occurrence and the random order.

        (A sorted order would let a customer guess neighbouring codes from their own.)
        Collisions are rare, so one sort finds the few repeated keys and only their rows
        are compared one by one, by their bytes: should two distinct codes share a hash
        key (see _keys), neither is dropped.
        """
        keys = self._keys(matrix)
        ordered = np.sort(keys)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        if len(repeated) == 0:
            return matrix
        seen: set[bytes] = set()
        drop = []
        for index in np.flatnonzero(np.isin(keys, repeated)):
            row = matrix[index].tobytes()
            if row in seen:
                drop.append(index)
            else:
                seen.add(row)
        keep = np.ones(len(matrix), dtype=bool)
        keep[drop] = False
        return matrix[keep]

    def _draw(self, n: int) -> np.ndarray:
        matrix = np.empty((n, self.length), dtype=np.uint8)
        matrix[:] = self.template
        for alphabet, cols in self.groups:
            digits = _uniform_digits(len(alphabet), n * len(cols))
            matrix[:, cols] = alphabet[digits.reshape(n, len(cols))]
        return matrix

    def _phrase_free(self, matrix: np.ndarray) -> np.ndarray:
        """True for each code that contains no excluded phrase, whatever its case."""
        keep = np.ones(len(matrix), dtype=bool)
        if not self.phrase_keys:
            return keep
        for start in range(0, len(matrix), _PHRASE_CHUNK):
            # One row per code position: the rolling keys below work on whole rows.
            chars = _LOWERCASE[matrix[start : start + _PHRASE_CHUNK]].T.astype(np.uint64)
            keep[start : start + chars.shape[1]] = ~self._contains_phrase(chars)
        return keep

    def _contains_phrase(self, chars: np.ndarray) -> np.ndarray:
        """Each window of a phrase length becomes one uint64 key, looked up among that
        length's phrase keys (np.isin): the cost hardly grows with the number of phrases."""
        length = len(chars)
        # packed[i]: the bytes up to position i shifted in one by one; its low 8*n bits are
        # exactly the n-byte window ending at i. hashed[i]: the polynomial hash of the first
        # i bytes, so window [s, s+n) hashes to hashed[s+n] - hashed[s] * M**n (mod 2**64).
        if self.phrase_keys[0][0] <= _PACKED_MAX:
            packed = chars.copy()
            for i in range(1, length):
                packed[i] |= packed[i - 1] << np.uint64(8)
        if self.phrase_keys[-1][0] > _PACKED_MAX:
            hashed = np.zeros((length + 1, chars.shape[1]), dtype=np.uint64)
            for i in range(length):
                hashed[i + 1] = hashed[i] * np.uint64(_MULTIPLIER) + chars[i]
        found = np.zeros(chars.shape[1], dtype=bool)
        for n, keys in self.phrase_keys:
            if n <= _PACKED_MAX:
                windows = packed[n - 1 :] & np.uint64((1 << 8 * n) - 1)
            else:
                # A window equal to a phrase always has its hash, so no phrase is missed; a
                # false collision (odds ~2**-64) only rejects a phrase-free code, which
                # generation replaces like any other rejected draw.
                windows = hashed[n:] - hashed[: length + 1 - n] * np.uint64(
                    pow(_MULTIPLIER, n, 2**64)
                )
            found |= np.isin(windows, keys).any(axis=0)
        return found

    def _keys(self, matrix: np.ndarray) -> np.ndarray:
        key = np.zeros(len(matrix), dtype=np.uint64)
        # The placeholder digits read as one mixed-radix number: exact, collision-free. Past
        # 63 bits, a 64-bit polynomial hash of the placeholder bytes (sorts much faster than
        # byte strings): equal codes always share a key, so every duplicate is found, and a
        # rare false collision drops nothing since _without_duplicates compares the bytes.
        for lookup, cols, radix in self._radix_tables:
            for col in cols:
                if self.int_keys:
                    key *= np.uint64(radix)
                    key += lookup[matrix[:, col]]
                else:
                    key *= np.uint64(_MULTIPLIER)
                    key += matrix[:, col]
        return key

    @cached_property
    def _radix_tables(self) -> list[tuple[np.ndarray, np.ndarray, int]]:
        tables = []
        for alphabet, cols in self.groups:
            lookup = np.zeros(256, dtype=np.uint64)
            lookup[alphabet] = np.arange(len(alphabet), dtype=np.uint64)
            tables.append((lookup, cols, len(alphabet)))
        return tables


def _uniform_digits(radix: int, n: int) -> np.ndarray:
    """``n`` uniform integers in [0, radix) from os.urandom, by byte rejection sampling."""
    limit = 256 - (256 % radix)  # bytes >= limit would bias the modulo
    accept_rate = limit / 256
    out = np.empty(n, dtype=np.uint8)
    filled = 0
    while filled < n:
        need = n - filled
        raw = np.frombuffer(os.urandom(int(need / accept_rate * 1.02) + 16), dtype=np.uint8)
        if limit != 256:
            raw = raw[raw < limit]
        take = min(need, len(raw))
        out[filled : filled + take] = raw[:take] % radix
        filled += take
    return out
