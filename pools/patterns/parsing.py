"""Patterns: parse and validate them, their excluded characters and phrases, count
combinations. Generation lives in ``generation.py``.

Placeholders: ``#`` digit, ``@`` a-z, ``^`` A-Z, ``*`` a-z A-Z 0-9, ``$`` A-Z 0-9.
Every other character is a literal. Excluded characters (case-sensitive) are removed
from every placeholder's character set; literals are kept as written. Excluded phrases
are matched case-insensitively anywhere in the code.

"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .errors import PatternError
from .generation import Generator, codes_to_lines, codes_to_str

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
MAX_EXCLUDED_PHRASES = 500  # phrase matching is per phrase length, but keep input bounded
MAX_PHRASE_LENGTH = 32
_ALLOWED_LITERALS = frozenset(chr(c) for c in range(0x21, 0x7F))  # printable ASCII, no space


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


def parse_excluded_phrases(text: str | None) -> tuple[str, ...]:
    """One phrase per line; blank lines ignored; compared lowercased, duplicates dropped.

    At most MAX_EXCLUDED_PHRASES phrases of at most MAX_PHRASE_LENGTH characters each.
    """
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
    return _check_phrase_limits(tuple(seen))


def _check_phrase_limits(phrases: tuple[str, ...]) -> tuple[str, ...]:
    if len(phrases) > MAX_EXCLUDED_PHRASES:
        message = f"Enter at most {MAX_EXCLUDED_PHRASES} excluded phrases, not {len(phrases):,}."
        raise PatternError(message, field="excluded_phrases")
    for phrase in phrases:
        if len(phrase) > MAX_PHRASE_LENGTH:
            shown = phrase if len(phrase) <= 40 else phrase[:40] + "..."
            message = (
                f'The excluded phrase "{shown}" is {len(phrase)} characters long; '
                f"phrases can be at most {MAX_PHRASE_LENGTH} characters."
            )
            raise PatternError(message, field="excluded_phrases")
    return phrases


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

    def regex(self) -> str:
        """A regular expression matching exactly the codes of this pattern (before
        excluded phrases), in the syntax Python and PostgreSQL share."""
        parts = (f"[{re.escape(p.alphabet)}]" if p.is_placeholder else re.escape(p.alphabet) for p in self.positions)
        return "^" + "".join(parts) + "$"

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
        return Generator(self).distinct(count)


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
        else _check_phrase_limits(tuple(dict.fromkeys(p.lower() for p in excluded_phrases if p)))
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
