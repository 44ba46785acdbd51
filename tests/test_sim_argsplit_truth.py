"""The simulator splits API arguments exactly as FreeSWITCH 1.10.12 does: every case of
tests/argsplit_truth.py (uuid_setvar / uuid_getvar with quotes, backslashes, `\\s`, empty
arguments, `^^X` delimiters, unicode, what the ESL line does to an argument's ends), captured on a
real FreeSWITCH (tests/fixtures/fs-captures/api-argsplit.json), replayed on the simulator over TCP
ESL and compared reply by reply, variable by variable."""
import json
import os

import pytest

import argsplit_truth
from conftest import CAPTURES
from switch_sim.argsplit import api_command, separate_string
from truth_capture import esl_setting, on_simulator

CAPTURED = json.loads((CAPTURES / "api-argsplit.json").read_text(encoding="utf-8"))["cases"]


def test_the_capture_has_every_case():
    assert [(c["api"], c["arg"]) for c in CAPTURED] == [(c["api"], c["arg"]) for c in argsplit_truth.cases()]


def test_simulator_matches_freeswitch():
    got = on_simulator(argsplit_truth.replay)
    problems = argsplit_truth.compare(CAPTURED, got)
    assert not problems, "\n".join(problems)


def test_what_freeswitch_does_in_short():
    """The three ways the simulator used to be kinder, read off the capture."""
    last = {c["arg"].split(" ", 2)[2]: c["set"] for c in CAPTURED
            if c["api"] == "uuid_setvar" and c["arg"].startswith("{U} last")}
    value = {text: next(iter(s.values()), None) for text, s in last.items()}
    assert value["\\\\"] == "\\"            # `\\` is one backslash
    assert value["it's"] == "it's"           # a lone quote stays
    assert value["''"] is None               # `''` is empty (uuid_setvar then unsets)
    assert value["a\\ b"] == "a\\ b"         # `\ ` neither splits nor unescapes
    assert value["x\u00a0"] == "x\u00a0"     # only ASCII blanks are trimmed from the line's ends


def test_callfork_quoting_comes_back_unchanged_from_freeswitch():
    """fsargs.quote_api_arg's arguments, in the last and a middle position, gave FreeSWITCH the text."""
    quoted = [c for c in CAPTURED if "text" in c]
    assert len(quoted) > 80
    for case in quoted:
        text = case["text"]
        if case["arg"].startswith("{U} quoted"):
            name = case["arg"].split(" ", 2)[1]
            assert case["set"] == ({name: text} if text else {}), case
        elif text:
            marker = case["arg"].rsplit(" ", 1)[1]
            assert case["set"] == {text: marker}, case
        else:
            assert case["reply"] == "-ERR No variable specified\n", case


@pytest.mark.parametrize("line, expected", [
    ("uuid_setvar u v a\rb", ("uuid_setvar", "u v a")),
    ("uuid_setvar u v x \t\x0b", ("uuid_setvar", "u v x")),
    ("uuid_setvar u v x\x0c\u00a0", ("uuid_setvar", "u v x\x0c\u00a0")),
    ("status", ("status", "")),
])
def test_api_command(line, expected):
    assert api_command(line) == expected


def test_separate_string_edge_cases_from_the_c_source():
    assert separate_string("a \\\\ b") == ["a", "\\", "b"]
    assert separate_string("'' x") == ["", "x"]
    assert separate_string("it's x") == ["it's x"]          # the splitter toggles on any quote...
    assert separate_string("^^:it's:x") == ["it's", "x"]    # ...the ^^X one only on a paired quote
    assert separate_string("^^n\\nana") == ["na", "a"]   # \<delim> is the delimiter, not \n
    assert separate_string("a b c d", max_parts=3) == ["a", "b", "c d"]


@pytest.mark.freeswitch
def test_freeswitch_still_behaves_as_captured():
    got = argsplit_truth.capture(*esl_setting(os.environ["CALLFORK_FS_ESL"]))
    problems = argsplit_truth.compare(CAPTURED, got, "this FreeSWITCH")
    assert not problems, "\n".join(problems)
