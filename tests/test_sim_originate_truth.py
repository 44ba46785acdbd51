"""The simulator reads originate's channel-variable blocks exactly as FreeSWITCH 1.10.12 does: every
case of tests/originate_truth.py, captured on a real FreeSWITCH (tests/fixtures/fs-captures/
originate-vars.json), replayed on the simulator over TCP ESL: the reply and the variables the new
channel got."""
import json
import os

import pytest

import originate_truth
from conftest import CAPTURES
from switch_sim.argsplit import create_brackets
from truth_capture import esl_setting, on_simulator

CAPTURED = json.loads((CAPTURES / "originate-vars.json").read_text(encoding="utf-8"))["cases"]


def test_the_capture_has_every_case():
    assert [c["arg"] for c in CAPTURED] == [c["arg"] for c in originate_truth.cases()]


def test_simulator_matches_freeswitch():
    got = on_simulator(originate_truth.replay)
    problems = originate_truth.compare(CAPTURED, got)
    assert not problems, "\n".join(problems)


def test_what_freeswitch_does_in_short():
    by_value = {c["arg"].split(",", 1)[1].split("}", 1)[0]: c
                for c in CAPTURED if c["arg"].startswith("{origination_uuid={U},")}
    # single quotes do not keep a comma: the command line's splitting already removed them
    assert list(by_value["cf1='Doe, John'"]["set"].values()) == ["Doe"]
    # \, does (the block is split with switch_separate_string(','), whose cleanup unescapes it)
    assert list(by_value["cf3=x\\,y"]["set"].values()) == ["x,y"]
    # a value may hold '=' and balanced braces; ':_:' anywhere makes it an enterprise originate
    assert list(by_value["cf9=a=b"]["set"].values()) == ["a=b"]
    assert by_value["cf23=a:_:b"]["reply"] == "-ERR CHAN_NOT_IMPLEMENTED\n"


def test_callforks_blocks_arrive_unchanged_on_freeswitch():
    written = [c for c in CAPTURED if "text" in c]
    assert len(written) > 20
    for case in written:
        assert case["reply"] == "+OK {U}\n", case
        assert list(case["set"].values()) == ([case["text"]] if case["text"] else []), case


def test_create_brackets():
    # inside the block quotes do group (it is the command line's splitting that drops them first)
    assert create_brackets("{a=1,b='x,y'}rest") == ({"a": "1", "b": "x,y"}, "rest")
    assert create_brackets("{a=1,b=x\\,y,c=p=q}rest") == ({"a": "1", "b": "x,y", "c": "p=q"}, "rest")
    assert create_brackets("{a={x},b=2}r") == ({"a": "{x}", "b": "2"}, "r")       # nesting counted
    assert create_brackets("{^^:a=1,2:b=3}r") == ({"a": "1,2", "b": "3"}, "r")
    assert create_brackets("{a,b=,a=2}r") == ({"a": "2"}, "r")                   # no '=', or nothing after it
    assert create_brackets("{a=1") is None


@pytest.mark.freeswitch
def test_freeswitch_still_behaves_as_captured():
    got = originate_truth.capture(*esl_setting(os.environ["CALLFORK_FS_ESL"]))     # paced
    problems = originate_truth.compare(CAPTURED, got, "this FreeSWITCH")
    assert not problems, "\n".join(problems)
