"""Coupon code patterns: parse, count combinations, generate codes.

Pure Python + numpy, no Django: the engine is tested and benchmarked on its own.
``parsing`` validates patterns and counts combinations; ``generation`` draws codes.
"""

from .generation import Generator, _uniform_digits, codes_to_lines, codes_to_str, estimate_phrase_share
from .parsing import (
    GUESSING_PROTECTION_RATIO,
    MAX_CODE_LENGTH,
    MAX_EXCLUDED_PHRASES,
    MAX_PHRASE_LENGTH,
    MIN_BULK_PLACEHOLDERS,
    PLACEHOLDER_NAMES,
    PLACEHOLDERS,
    Pattern,
    PatternError,
    Position,
    parse_excluded_characters,
    parse_excluded_phrases,
    parse_pattern,
)

__all__ = [
    "GUESSING_PROTECTION_RATIO", "MAX_CODE_LENGTH", "MAX_EXCLUDED_PHRASES", "MAX_PHRASE_LENGTH",
    "MIN_BULK_PLACEHOLDERS", "PLACEHOLDER_NAMES", "PLACEHOLDERS", "Generator", "Pattern", "PatternError",
    "Position", "_uniform_digits", "codes_to_lines", "codes_to_str", "estimate_phrase_share",
    "parse_excluded_characters", "parse_excluded_phrases", "parse_pattern",
]
