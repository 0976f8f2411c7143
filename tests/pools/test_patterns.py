"""The pattern engine on its own: parsing, exact counts, CSPRNG generation."""

import math
import string
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pools import patterns
from pools.patterns import PLACEHOLDERS, PatternError, parse_pattern


class TestParsing:
    def test_placeholders_and_literals(self):
        pattern = parse_pattern("*@##COUPON*")
        assert pattern.placeholder_count == 5
        assert [p.token for p in pattern.positions if not p.is_placeholder] == list("COUPON")
        assert pattern.length == 11

    def test_literal_only_pattern_is_generic(self):
        pattern = parse_pattern("SPRINGCOUPON")
        assert pattern.is_generic
        assert pattern.generate(1) == ["SPRINGCOUPON"]

    def test_generic_code_yields_a_single_code(self):
        with pytest.raises(PatternError, match="generic code"):
            parse_pattern("SPRINGCOUPON").generate(2)

    @pytest.mark.parametrize(
        "text, message",
        [
            ("", "Enter a pattern"),
            ("   ", "Enter a pattern"),
            (" ABC###", "cannot start or end with a space"),
            ("AB C###", "cannot be part of a coupon code"),
            ("ÄBC###", "cannot be part of a coupon code"),
            ("AB\tC", "cannot be part of a coupon code"),
            ("#" * 65, "at most 64 characters"),
        ],
    )
    def test_invalid_patterns_are_refused_with_a_reason(self, text, message):
        with pytest.raises(PatternError, match=message) as error:
            parse_pattern(text)
        assert error.value.field == "pattern"

    def test_excluded_characters_are_comma_separated_and_case_sensitive(self):
        assert patterns.parse_excluded_characters(" O, 0 ,I,1,, o ") == {"O", "0", "I", "1", "o"}

    def test_excluded_character_items_must_be_single_characters(self):
        with pytest.raises(PatternError, match='"OI" is not a single character') as error:
            patterns.parse_excluded_characters("OI, 1")
        assert error.value.field == "excluded_characters"

    def test_excluding_a_whole_character_set_is_refused(self):
        with pytest.raises(PatternError, match='remove every character that "#"') as error:
            parse_pattern("A###", ",".join(string.digits))
        assert error.value.field == "excluded_characters"

    def test_excluded_phrases_one_per_line_lowercased(self):
        assert patterns.parse_excluded_phrases("Bad\n\n  WORD \nbad\n") == ("bad", "word")

    def test_phrase_in_the_fixed_text_is_refused(self):
        with pytest.raises(PatternError, match='"ring" is part of the pattern') as error:
            parse_pattern("SPRING-$$$$", "", "ring")
        assert error.value.field == "excluded_phrases"

    def test_literals_are_not_affected_by_excluded_characters(self):
        pattern = parse_pattern("OI-$$$$", "O,I")
        code = pattern.generate(1)[0]
        assert code.startswith("OI-")
        assert not set(code[3:]) & {"O", "I"}


class TestCombinations:
    @pytest.mark.parametrize(
        "text, excluded, expected",
        [
            ("#", "", 10),
            ("@", "", 26),
            ("^", "", 26),
            ("*", "", 62),
            ("$", "", 36),
            ("ABC", "", 1),
            ("SPRING-$$$$$$$$", "O,0,I,1", 32**8),
            ("*@##COUPON*", "", 62 * 26 * 10 * 10 * 62),
            ("#^", "0,A,a", 9 * 25),  # 'a' does not affect ^ (case-sensitive)
            ("*" * 64, "", 62**64),  # big integers stay exact
        ],
    )
    def test_exact_number_of_combinations(self, text, excluded, expected):
        assert parse_pattern(text, excluded).combinations == expected

    def test_one_percent_rule(self):
        pattern = parse_pattern("####")
        assert pattern.combinations == 10_000
        assert pattern.max_coupons == 100


class TestGeneration:
    def test_exact_count_and_no_duplicates(self):
        codes = parse_pattern("SPRING-$$$$$$$$", "O,0,I,1").generate(50_000)
        assert len(codes) == 50_000
        assert len(set(codes)) == 50_000

    def test_tiny_space_is_filled_exactly_without_duplicates(self):
        codes = parse_pattern("##").generate(100)
        assert sorted(codes) == [f"{n:02d}" for n in range(100)]

    def test_more_codes_than_combinations_is_refused(self):
        with pytest.raises(PatternError, match="only 100 combinations"):
            parse_pattern("##").generate(101)

    def test_codes_are_drawn_from_the_operating_system_csprng(self):
        with mock.patch("pools.patterns.os.urandom", wraps=patterns.os.urandom) as urandom:
            parse_pattern("$$$$$$").generate(10)
        assert urandom.called

    def test_characters_are_uniformly_distributed(self):
        # 36 symbols do not divide 256: without rejection sampling the first 4 symbols
        # would come up ~14% more often. 360,000 draws give each ~10,000 +- 100.
        digits = patterns._uniform_digits(36, 360_000)
        counts = [int((digits == d).sum()) for d in range(36)]
        assert max(counts) < 10_500 and min(counts) > 9_500

    def test_excluded_phrases_never_appear_any_case(self):
        pattern = parse_pattern("@@@@", "", "ab\nCD")
        codes = pattern.generate(20_000)
        assert len(set(codes)) == 20_000
        assert not [c for c in codes if "ab" in c.lower() or "cd" in c.lower()]

    def test_phrases_that_rule_out_everything_end_with_an_error(self):
        pattern = parse_pattern("#", "", "\n".join(string.digits))
        with pytest.raises(PatternError, match="leave too few combinations"):
            pattern.generate(1)

    def test_lines_are_ready_for_copy(self):
        lines = parse_pattern("AB-####").generate_lines(3)
        rows = lines.decode().split("\n")
        assert len(rows) == 4 and rows[-1] == ""
        assert all(r.startswith("AB-") and len(r) == 7 for r in rows[:3])

    def test_codes_keep_a_random_order(self):
        codes = parse_pattern("######").generate(2000)
        assert codes != sorted(codes)

    def test_phrase_share_estimate(self):
        pattern = parse_pattern("#", "", "1\n2\n3\n4\n5")
        assert 0.4 < patterns.estimate_phrase_share(pattern) < 0.6
        assert patterns.estimate_phrase_share(parse_pattern("####")) == 0.0


placeholder = st.sampled_from(sorted(PLACEHOLDERS))
literal = st.sampled_from("ABCXYZ-_.!7")
pattern_texts = st.lists(st.one_of(placeholder, literal), min_size=1, max_size=12).map("".join)
excluded_sets = st.sets(st.sampled_from(string.ascii_letters + string.digits), max_size=12)
phrase_lists = st.lists(
    st.text(alphabet=string.ascii_letters + string.digits, min_size=2, max_size=3), max_size=3
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=pattern_texts, excluded=excluded_sets, phrases=phrase_lists, count=st.integers(1, 300))
def test_every_code_matches_its_pattern_and_avoids_exclusions(text, excluded, phrases, count):
    try:
        pattern = parse_pattern(text, ",".join(sorted(excluded)), "\n".join(phrases))
    except PatternError:
        return  # e.g. a whole character set excluded, or a phrase in the fixed text
    if pattern.is_generic:
        count = 1
    count = min(count, pattern.combinations // 4 or 1)
    try:
        codes = pattern.generate(count)
    except PatternError as exc:
        assert "leave too few combinations" in str(exc)  # phrases excluded too much of a tiny pattern
        return
    assert len(codes) == count == len(set(codes))
    lowered_phrases = [p.lower() for p in phrases]
    for code in codes:
        assert pattern.matches(code), (text, code)
        for position, char in zip(pattern.positions, code, strict=True):
            if position.is_placeholder:
                assert char not in excluded
        assert not any(p in code.lower() for p in lowered_phrases), (code, phrases)


@given(text=pattern_texts, excluded=excluded_sets)
def test_combination_count_is_the_product_of_character_set_sizes(text, excluded):
    try:
        pattern = parse_pattern(text, ",".join(sorted(excluded)))
    except PatternError:
        return
    expected = math.prod(
        len([c for c in PLACEHOLDERS[t] if c not in excluded]) if t in PLACEHOLDERS else 1
        for t in text
    )
    assert pattern.combinations == expected


@pytest.mark.parametrize("text", ["###", "#" * 30])  # 64-bit keys, and byte-string keys
def test_collisions_are_dropped_keeping_first_occurrences_in_order(text):
    generator = patterns._Generator(parse_pattern(text))
    rows = generator.distinct(5)
    with_repeats = np.concatenate([rows, rows[[1, 3]], rows[[1]]])
    kept = generator._without_duplicates(with_repeats)
    assert kept.tolist() == rows.tolist()
