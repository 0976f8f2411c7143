"""Coupon code patterns: parse, count combinations, generate codes.

Pure Python + numpy, no Django: the engine is tested and benchmarked on its own.

Placeholders: ``#`` digit, ``@`` a-z, ``^`` A-Z, ``*`` a-z A-Z 0-9, ``$`` A-Z 0-9.
Every other character is a literal. Excluded characters (case-sensitive) are removed
from every placeholder's character set; literals are kept as written. Excluded phrases
are matched case-insensitively anywhere in the code.

Codes come from the operating system's CSPRNG (``os.urandom``); each placeholder draws
by rejection sampling, so every character of its set is equally likely.
"""

from __future__ import annotations

import math
import os
import string
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

PLACEHOLDERS: dict[str, str] = {
    "#": string.digits,
    "@": string.ascii_lowercase,
    "^": string.ascii_uppercase,
    "*": string.ascii_lowercase + string.ascii_uppercase + string.digits,
    "$": string.ascii_uppercase + string.digits,
}
PLACEHOLDER_NAMES: dict[str, str] = {
    "#": "digit 0-9",
    "@": "lowercase letter a-z",
    "^": "uppercase letter A-Z",
    "*": "letter or digit a-z A-Z 0-9",
    "$": "uppercase letter or digit A-Z 0-9",
}
MAX_CODE_LENGTH = 64
GUESSING_PROTECTION_RATIO = 100  # at most 1 in 100 combinations may be a real coupon
MIN_BULK_PLACEHOLDERS = 4
_ALLOWED_LITERALS = frozenset(chr(c) for c in range(0x21, 0x7F))  # printable ASCII, no space


class PatternError(ValueError):
    """A pattern, excluded character or excluded phrase that cannot be used.

    ``field`` names the input at fault: ``pattern``, ``excluded_characters`` or
    ``excluded_phrases``.
    """

    def __init__(self, message: str, field: str = "pattern"):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Position:
    """One character of a pattern: a literal, or a placeholder with its allowed characters."""

    token: str
    alphabet: str  # the literal itself for a literal position

    @property
    def is_placeholder(self) -> bool:
        return self.token in PLACEHOLDERS


def parse_excluded_characters(text: str | None) -> frozenset[str]:
    """Parse the comma-separated excluded characters field (case-sensitive).

    Whitespace around items is ignored, so ``"O, 0, I, 1"`` works. Each item must be
    exactly one character.
    """
    if not text or not text.strip():
        return frozenset()
    chars = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if len(item) != 1:
            raise PatternError(
                f'"{item}" is not a single character: list excluded characters one by one, '
                "separated by commas (for example O, 0, I, 1).",
                field="excluded_characters",
            )
        chars.add(item)
    return frozenset(chars)


def format_excluded_characters(chars: Iterable[str]) -> str:
    return ",".join(sorted(chars))


def parse_excluded_phrases(text: str | None) -> tuple[str, ...]:
    """One phrase per line; blank lines ignored; compared lowercased, duplicates dropped."""
    if not text:
        return ()
    seen: dict[str, None] = {}
    for line in text.splitlines():
        phrase = line.strip().lower()
        if not phrase:
            continue
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in phrase):
            raise PatternError(
                "Excluded phrases cannot contain control characters.", field="excluded_phrases"
            )
        seen.setdefault(phrase, None)
    return tuple(seen)


@dataclass(frozen=True)
class Pattern:
    """A parsed pattern together with its excluded characters and phrases."""

    text: str
    positions: tuple[Position, ...]
    excluded_characters: frozenset[str] = frozenset()
    excluded_phrases: tuple[str, ...] = ()

    @property
    def length(self) -> int:
        return len(self.positions)

    @property
    def placeholder_count(self) -> int:
        return sum(1 for p in self.positions if p.is_placeholder)

    @property
    def is_generic(self) -> bool:
        """A pattern of literals only: every customer gets this same code."""
        return self.placeholder_count == 0

    @cached_property
    def combinations(self) -> int:
        """Exact number of distinct codes (before excluded phrases)."""
        return math.prod(len(p.alphabet) for p in self.positions)

    @property
    def max_coupons(self) -> int:
        """Guessing protection: a pool may hold at most 1% of the combinations."""
        return self.combinations // GUESSING_PROTECTION_RATIO

    def matches(self, code: str) -> bool:
        """True if ``code`` could have been produced by this pattern."""
        if len(code) != self.length:
            return False
        return all(c in p.alphabet for c, p in zip(code, self.positions, strict=True))

    def generate(self, count: int) -> list[str]:
        """``count`` distinct codes as ``str``, in random order.

        Raises PatternError when the pattern cannot yield that many distinct codes.
        """
        return codes_to_str(self.generate_matrix(count))

    def generate_lines(self, count: int) -> bytes:
        """``count`` distinct codes as ASCII text, one per line (ready for a COPY)."""
        return codes_to_lines(self.generate_matrix(count))

    def generate_matrix(self, count: int) -> np.ndarray:
        """``count`` distinct codes as a (count, length) uint8 matrix of ASCII bytes."""
        return _Generator(self).distinct(count)


def parse_pattern(
    text: str,
    excluded_characters: str | Iterable[str] | None = None,
    excluded_phrases: str | Iterable[str] | None = None,
) -> Pattern:
    """Validate and parse a pattern; raise PatternError with a message a manager understands."""
    if text is None or not text.strip():
        raise PatternError("Enter a pattern.")
    if text != text.strip():
        raise PatternError("The pattern cannot start or end with a space.")
    if len(text) > MAX_CODE_LENGTH:
        raise PatternError(
            f"The pattern is {len(text)} characters long; codes can be at most "
            f"{MAX_CODE_LENGTH} characters."
        )
    bad = sorted({c for c in text if c not in PLACEHOLDERS and c not in _ALLOWED_LITERALS})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise PatternError(
            f"The pattern contains characters that cannot be part of a coupon code: {shown}. "
            "Use printable ASCII characters without spaces."
        )
    excluded = (
        parse_excluded_characters(excluded_characters)
        if excluded_characters is None or isinstance(excluded_characters, str)
        else frozenset(excluded_characters)
    )
    phrases = (
        parse_excluded_phrases(excluded_phrases)
        if excluded_phrases is None or isinstance(excluded_phrases, str)
        else tuple(dict.fromkeys(p.lower() for p in excluded_phrases if p))
    )
    positions = []
    for token in text:
        if token in PLACEHOLDERS:
            alphabet = "".join(c for c in PLACEHOLDERS[token] if c not in excluded)
            if not alphabet:
                raise PatternError(
                    f'The excluded characters remove every character that "{token}" '
                    f"({PLACEHOLDER_NAMES[token]}) can produce.",
                    field="excluded_characters",
                )
            positions.append(Position(token, alphabet))
        else:
            positions.append(Position(token, token))
    pattern = Pattern(text, tuple(positions), excluded, phrases)
    _check_phrases_avoidable(pattern)
    return pattern


def _check_phrases_avoidable(pattern: Pattern) -> None:
    """Refuse a phrase that every code would contain (it sits in the fixed text)."""
    lowered = [
        p.alphabet.lower() if not p.is_placeholder else None for p in pattern.positions
    ]
    for phrase in pattern.excluded_phrases:
        for start in range(pattern.length - len(phrase) + 1):
            window = lowered[start : start + len(phrase)]
            if all(ch is not None and ch == phrase[i] for i, ch in enumerate(window)):
                raise PatternError(
                    f'The excluded phrase "{phrase}" is part of the pattern\'s fixed text, '
                    "so every code would contain it.",
                    field="excluded_phrases",
                )


def estimate_phrase_share(pattern: Pattern, sample: int = 20_000) -> float:
    """Share of combinations (0..1) that contain an excluded phrase, by random sampling.

    The exact figure would need an automaton over the pattern; a sample is enough to
    tell a manager how much the phrases lower the real capacity.
    """
    if not pattern.excluded_phrases or pattern.is_generic:
        return 0.0
    generator = _Generator(pattern)
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


class _Generator:
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
        self.phrases = [
            np.frombuffer(phrase.encode("utf-8"), dtype=np.uint8)
            for phrase in pattern.excluded_phrases
            if len(phrase) <= self.length
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
        if count > self.pattern.combinations:
            raise PatternError(
                f"The pattern has only {self.pattern.combinations:,} combinations; "
                f"{count:,} distinct codes cannot be made from it."
            )
        collected = np.empty((0, self.length), dtype=np.uint8)
        rounds = 0
        while len(collected) < count:
            rounds += 1
            if rounds > 200:
                raise PatternError(
                    f"Could not generate {count:,} distinct codes: the excluded phrases "
                    "leave too few combinations of this pattern.",
                    field="excluded_phrases",
                )
            missing = count - len(collected)
            batch = self._draw(max(16, int(missing * self._OVERDRAW)))
            batch = batch[self._phrase_free(batch)]
            collected = self._without_duplicates(np.concatenate([collected, batch]))
        return collected[:count]

    def _without_duplicates(self, matrix: np.ndarray) -> np.ndarray:
        """Drop repeated codes, keeping each first occurrence and the random order.

        (A sorted order would let a customer guess neighbouring codes from their own.)
        Collisions are rare, so one sort finds the few repeated keys and only their rows
        are looked at one by one.
        """
        keys = self._keys(matrix)
        ordered = np.sort(keys)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        if len(repeated) == 0:
            return matrix
        seen: set = set()
        drop = []
        for index in np.flatnonzero(np.isin(keys, repeated)):
            key = keys[index].item()
            if key in seen:
                drop.append(index)
            else:
                seen.add(key)
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
        keep = np.ones(len(matrix), dtype=bool)
        if not self.phrases:
            return keep
        lowered = matrix.copy()
        upper = (lowered >= ord("A")) & (lowered <= ord("Z"))
        lowered[upper] += 32
        for phrase in self.phrases:
            for start in range(self.length - len(phrase) + 1):
                keep &= ~np.all(lowered[:, start : start + len(phrase)] == phrase, axis=1)
        return keep

    def _keys(self, matrix: np.ndarray) -> np.ndarray:
        if self.int_keys:
            # The placeholder digits read as one mixed-radix number: exact, collision-free.
            key = np.zeros(len(matrix), dtype=np.uint64)
            for lookup, cols, radix in self._radix_tables:
                for col in cols:
                    key *= np.uint64(radix)
                    key += lookup[matrix[:, col]]
            return key
        return matrix.view(f"S{self.length}").ravel()

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
