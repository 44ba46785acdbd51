"""The simulator's `originate` through mod_loopback (callfork's REST calls) does what FreeSWITCH 1.10.12
does: every case of tests/originate_loopback_truth.py, captured on a real FreeSWITCH
(tests/fixtures/fs-captures/originate-loopback.json), replayed on the simulator over TCP ESL: the
bgapi reply and when it came, what a LegEvents-style connection filtered on the originated uuid
hears, and each leg's events (a pair: `loopback/<to>-a`, the originated channel, and
`loopback/<to>-b`, which runs the dialplan; ringing, early media, answer and the causes of a far
side that is busy, never answers or is canceled).

Not replayed: a number the test switch's dialplan does not know (its vanilla default context
plays a missing file to it and the originate fails with NORMAL_CLEARING); the simulator's dialplan
answers and parks such numbers (switch_sim/loopback.py far_end_apps), so that REST calls to any
number reach callfork on it."""
import json
import os

import pytest

import originate_loopback_truth as truth
from conftest import CAPTURES
from truth_capture import esl_setting, on_simulator

CAPTURED = json.loads((CAPTURES / "originate-loopback.json").read_text(encoding="utf-8"))["cases"]
NOT_REPLAYED = "a number the dialplan does not know"


def _case(name: str) -> dict:
    return next(case for case in CAPTURED if case["case"] == name)


def _names(rows: list) -> list:
    return [r[1] for r in rows if r[1] in truth.KEY_EVENTS]


def test_the_capture_has_every_case():
    assert [c["case"] for c in CAPTURED] == [c[0] for c in truth.CASES]


def test_what_freeswitch_does_in_short():
    answered = _case("answers and parks")
    assert answered["reply"] == "+OK {U}\n"
    # a pair: the originated channel is the -a leg, the -b leg runs the dialplan of the number
    assert {r[6] for r in answered["a"]} == {"loopback/9999-a"} and {r[6] for r in answered["b"]} == {"loopback/9999-b"}
    assert _names(answered["a"])[:3] == ["CHANNEL_OUTGOING", "CHANNEL_CREATE", "CHANNEL_ORIGINATE"]
    # ringing on the far side is CHANNEL_PROGRESS on the originated channel; the reply waits for the answer
    rings = _case("rings, then answers")
    assert rings["leg_events"] == ["CHANNEL_PROGRESS", "CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE"]
    assert rings["reply"] == "+OK {U}\n" and rings["seconds"] >= 0.9
    # early media ends the originate at once: the app runs on a channel that is not answered
    early = _case("early media, then answers")
    assert early["reply"] == "+OK {U}\n" and early["seconds"] < 0.5
    assert early["leg_events"] == ["CHANNEL_PROGRESS_MEDIA", "CHANNEL_HANGUP_COMPLETE"]
    # failures: the -b leg's cause is the reply (respond does nothing on a loopback leg)
    assert _case("rings, never answers")["reply"] == "-ERR NO_ANSWER\n"
    assert 2.5 <= _case("rings, never answers")["seconds"] <= 3.5
    assert _case("rings, then its dialplan ends")["reply"] == "-ERR NORMAL_CLEARING\n"
    assert _case("respond 486")["reply"] == "-ERR NORMAL_CLEARING\n"
    assert _case("busy")["reply"] == "-ERR USER_BUSY\n"
    canceled = _case("canceled while ringing")
    assert canceled["reply"] == "-ERR ORIGINATOR_CANCEL\n"
    assert canceled["b"][-1][5] == "ORIGINATOR_CANCEL"     # the cause reaches the far side
    # the app runs once answered: a socket that cannot connect ends the call, not the originate
    closed = _case("socket to a closed port")
    assert closed["reply"] == "+OK {U}\n" and closed["a"][-1][5] == "NORMAL_CLEARING"
    assert _case(NOT_REPLAYED)["reply"] == "-ERR NORMAL_CLEARING\n"


@pytest.fixture(scope="module")
def replayed():
    return on_simulator(truth.replay)


def test_simulator_matches_freeswitch(replayed):
    got = replayed
    expected = [case for case in CAPTURED if case["case"] != NOT_REPLAYED]
    got = [case for case in got if case["case"] != NOT_REPLAYED]
    problems = truth.compare(expected, got)
    assert not problems, "\n".join(problems)


def test_a_number_the_simulators_dialplan_does_not_know_answers_and_parks(replayed):
    case = next(c for c in replayed if c["case"] == NOT_REPLAYED)
    assert case["reply"] == "+OK {U}\n"
    assert _names(case["b"])[:2] == ["CHANNEL_CREATE", "CHANNEL_ANSWER"]


@pytest.mark.freeswitch
def test_freeswitch_still_behaves_as_captured():
    got = truth.capture(*esl_setting(os.environ["CALLFORK_FS_ESL"]))
    problems = truth.compare(CAPTURED, got, "this FreeSWITCH", strict=False)
    assert not problems, "\n".join(problems)
