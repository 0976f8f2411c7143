"""The pattern engine on its own: parsing, exact counts, CSPRNG generation."""

import math
import random
import re
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

    def test_at_most_500_excluded_phrases(self):
        phrases = [f"w{n:03d}" for n in range(501)]
        assert len(patterns.parse_excluded_phrases("\n".join(phrases[:500]))) == 500
        assert len(patterns.parse_excluded_phrases("\n".join(phrases[:500] * 2))) == 500
        with pytest.raises(PatternError, match="at most 500 excluded phrases, not 501") as error:
            patterns.parse_excluded_phrases("\n".join(phrases))
        assert error.value.field == "excluded_phrases"
        with pytest.raises(PatternError, match="at most 500 excluded phrases") as error:
            parse_pattern("A-$$$$$$", "", phrases)  # a list is held to the same limit
        assert error.value.field == "excluded_phrases"

    def test_excluded_phrases_are_at_most_32_characters(self):
        assert patterns.parse_excluded_phrases("x" * 32) == ("x" * 32,)
        with pytest.raises(PatternError, match='"abcdefghijklmnopqrstuvwxyz0123456" is 33') as error:
            patterns.parse_excluded_phrases("fine\nABCDEFGHIJKLMNOPQRSTUVWXYZ0123456")
        assert error.value.field == "excluded_phrases"
        assert "at most 32 characters" in str(error.value)
        with pytest.raises(PatternError, match="at most 32 characters"):
            parse_pattern("A-$$$$$$", "", ["y" * 33])

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

    @pytest.mark.parametrize(
        "text, stream, expected",
        [
            ("#", [7], "7"),
            ("^", [2], "C"),
            ("X-#^", [7], "X-7H"),
            ("@", [26 + 4], "e"),  # bytes are reduced modulo the character set size
            ("#", [252, 3], "3"),  # 252 >= 250 would bias the digits: rejected, 3 is used
        ],
    )
    def test_codes_are_drawn_from_the_operating_system_csprng(self, text, stream, expected):
        def urandom(n):  # known "random" bytes: the code must be exactly what they dictate
            return bytes(stream * n)[:n]

        with mock.patch("pools.patterns.generation.os.urandom", side_effect=urandom) as fake:
            assert parse_pattern(text).generate(1) == [expected]
        assert fake.called

    def test_shuffle_of_a_whole_space_is_ordered_by_csprng_keys(self):
        # Enumeration gives combination i the i-th little-endian uint64 as its sort key:
        # descending keys must give the combinations in reverse order.
        def urandom(n):
            return np.arange(n // 8, 0, -1, dtype="<u8").tobytes()

        with mock.patch("pools.patterns.generation.os.urandom", side_effect=urandom):
            assert parse_pattern("#").generate(10) == list("9876543210")

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
        with pytest.raises(PatternError, match="leave too few combinations") as error:
            pattern.generate(1)
        assert error.value.field == "excluded_phrases"
        assert "only 0 of 10" in str(error.value)

    def test_phrases_longer_than_8_characters_are_honoured(self):
        # Ten binary digits: 1,024 codes; 5 contain a phrase ("010101010" at 0 or 1, or 1*10).
        pattern = parse_pattern("#" * 10, "2,3,4,5,6,7,8,9", "010101010\n1111111111")
        contain = {"0101010100", "0101010101", "0010101010", "1010101010", "1111111111"}
        codes = pattern.generate(1019)  # more than half: every combination is enumerated
        assert set(codes) == {f"{n:010b}" for n in range(1024)} - contain
        sampled = pattern.generate(300)  # fewer: drawn at random
        assert not set(sampled) & contain and len(set(sampled)) == 300
        with pytest.raises(PatternError, match=r"leave too few .* \(only 1,019 of 1,024\)"):
            pattern.generate(1020)

    def test_long_phrases_are_found_in_any_case_and_position(self):
        generator = patterns.Generator(parse_pattern("*" * 40, "", "SpringSale2024\nab"))
        rows = ["x" * 40, "x" * 26 + "sPRINGsALE2024", "SPRINGSALE2024" + "x" * 26,
                "x" * 13 + "springsale202" + "x" * 14, "x" * 39 + "A", "x" * 38 + "aB"]
        matrix = np.frombuffer("".join(rows).encode(), dtype=np.uint8).reshape(len(rows), 40)
        assert generator._phrase_free(matrix).tolist() == [True, False, False, True, True, False]

    def test_many_phrases_do_not_slow_generation_down(self):
        # Matching is one lookup per phrase length, not per phrase: 500 phrases used to make
        # generation ~550x slower. Counted, not timed (a timed bound flakes on a busy machine).
        rng = random.Random(500)
        phrases: set[str] = set()
        while len(phrases) < 500:  # 3 to 12 characters, so long phrases are in the mix too
            length = rng.choice([3, 4, 4, 5, 5, 6, 7, 8, 10, 12])
            phrases.add("".join(rng.choices(string.ascii_lowercase + "23456789", k=length)))
        pattern = parse_pattern("SPRING-$$$$$$$$", "O,0,I,1", "\n".join(sorted(phrases)))
        assert len(pattern.excluded_phrases) == 500
        from pools.patterns import generation

        lookups, passes = [], []
        real_isin, real_pass = generation.np.isin, generation.Generator._contains_phrase

        def counted_isin(windows, keys):
            lookups.append(len(keys))
            return real_isin(windows, keys)

        def counted_pass(self, chars):
            passes.append(chars.shape[1])
            return real_pass(self, chars)

        with mock.patch.object(generation.np, "isin", counted_isin), \
                mock.patch.object(generation.Generator, "_contains_phrase", counted_pass):
            codes = pattern.generate(200_000)
        # One lookup per phrase length in each pass over a chunk of codes (holding all
        # that length's phrases), however many phrases there are.
        lengths = {len(phrase) for phrase in phrases}
        assert passes and len(lookups) <= len(passes) * len(lengths)
        assert max(lookups) > 50
        assert len(set(codes)) == 200_000
        assert not _codes_containing(codes, pattern.excluded_phrases)
        # The phrases do bite: about 1 in 100 random codes contains one.
        assert patterns.estimate_phrase_share(pattern) > 0.003

    def test_every_combination_can_be_asked_for(self):
        codes = parse_pattern("####").generate(10_000)
        assert sorted(codes) == [f"{n:04d}" for n in range(10_000)]
        assert codes != sorted(codes)  # still in a random order

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


def _codes_containing(codes, phrases):
    """Codes that contain a phrase, any case: every window compared as a byte string
    (independent of the engine's packed keys and hashes, and fast enough for 500 phrases)."""
    matrix = np.frombuffer("".join(codes).lower().encode(), np.uint8).reshape(len(codes), -1)
    hit = np.zeros(len(codes), dtype=bool)
    for n in {len(p) for p in phrases}:
        wanted = [p.encode() for p in phrases if len(p) == n]
        for start in range(matrix.shape[1] - n + 1):
            windows = np.ascontiguousarray(matrix[:, start : start + n]).view(f"S{n}").ravel()
            hit |= np.isin(windows, wanted)
    return [code for code, found in zip(codes, hit, strict=True) if found]


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
        # Only phrases can rule out too much of a (tiny) pattern.
        assert phrases and "leave too few combinations" in str(exc), (text, excluded, count)
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


@pytest.mark.parametrize("text", ["###", "#" * 30, "X-" + "*" * 20])  # exact keys, hash keys
def test_collisions_are_dropped_keeping_first_occurrences_in_order(text):
    generator = patterns.Generator(parse_pattern(text))
    rows = generator.distinct(5)
    with_repeats = np.concatenate([rows, rows[[1, 3]], rows[[1]]])
    kept = generator._without_duplicates(with_repeats)
    assert kept.tolist() == rows.tolist()


def test_codes_sharing_a_hash_key_are_told_apart_by_their_bytes():
    generator = patterns.Generator(parse_pattern("X-" + "*" * 20))  # > 63 bits: hash keys
    rows = generator.distinct(4)
    with_repeat = np.concatenate([rows, rows[[2]]])
    with mock.patch.object(generator, "_keys", return_value=np.zeros(5, dtype=np.uint64)):
        kept = generator._without_duplicates(with_repeat)  # as if all five keys collided
    assert kept.tolist() == rows.tolist()


@settings(max_examples=100, deadline=None)
@given(text=pattern_texts, excluded=excluded_sets, other=pattern_texts)
def test_the_regex_matches_exactly_the_codes_of_the_pattern(text, excluded, other):
    try:
        pattern, foreign = parse_pattern(text, ",".join(sorted(excluded))), parse_pattern(other)
    except PatternError:
        return
    regex = re.compile(pattern.regex())
    for code in pattern.generate(min(20, pattern.combinations)) if not pattern.is_generic else [pattern.text]:
        assert regex.fullmatch(code), (pattern.regex(), code)
    for code in foreign.generate(min(20, foreign.combinations)) if not foreign.is_generic else [foreign.text]:
        assert bool(regex.fullmatch(code)) == pattern.matches(code), (pattern.regex(), code)
