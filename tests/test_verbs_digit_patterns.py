"""digitsMatch: the digits pressed, matched against comma-separated patterns (verbs/digit_patterns.py)."""
from verbs.digit_patterns import DigitMatcher, split_patterns


def test_patterns_are_split_and_trimmed():
    assert split_patterns(" *9, #12,,") == ("*9", "#12")
    assert split_patterns(("*9", "")) == ("*9",)


def test_a_match_is_reported_once_then_pressing_starts_over():
    m = DigitMatcher("*9,#12")
    assert [m.press(d, t) for t, d in enumerate("1#12")] == [None, None, None, "#12"]
    assert m.press("2", 10) is None          # "#12" was used up: "2" alone matches nothing
    assert [m.press(d, 11 + t) for t, d in enumerate("*9")] == [None, "*9"]


def test_a_pause_starts_a_new_sequence_when_asked():
    m = DigitMatcher("12", gap_s=3.0)
    assert m.press("1", 0.0) is None and m.press("2", 5.0) is None
    assert m.press("1", 6.0) is None and m.press("2", 7.0) == "12"
    without_gap = DigitMatcher("12")
    assert without_gap.press("1", 0.0) is None and without_gap.press("2", 500.0) == "12"


def test_no_patterns_match_nothing():
    assert DigitMatcher("").press("1") is None
