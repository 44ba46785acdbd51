"""The simulator's `uuid_displace` answers and ends its media bug as FreeSWITCH 1.10.12 does: every
case of tests/displace_truth.py, captured on a real FreeSWITCH (tests/fixtures/fs-captures/
uuid-displace.json), replayed on the simulator over TCP ESL (a simulator without uuid_displace
answers `-ERR uuid_displace Command not found!` to each)."""
import json
import os

import pytest

import displace_truth
from conftest import CAPTURES
from truth_capture import esl_setting, on_simulator

CAPTURED = json.loads((CAPTURES / "uuid-displace.json").read_text(encoding="utf-8"))["cases"]


def test_the_capture_has_every_case():
    assert [c["line"] for c in CAPTURED] == [c["line"] for c in displace_truth.cases()]


def test_simulator_matches_freeswitch():
    got = on_simulator(displace_truth.replay)
    problems = displace_truth.compare(CAPTURED, got)
    assert not problems, "\n".join(problems)


def test_what_freeswitch_does_in_short():
    replies = {c["line"]: c["reply"] for c in CAPTURED}
    assert replies["{U} start tts://flite|slt|hello"] == "-ERR Cannot displace session!\n"   # no TTS here
    assert replies["{U} stop {S}"] in ("-ERR Cannot stop displace session!\n", "+OK Success\n")
    ended = [c for c in CAPTURED if c["until"]]
    assert all(c["probe"] == "+OK Success\n" for c in ended)     # the file's end and the limit removed the bug
    assert ended[1]["ended_after_s"] <= 1.2                      # the limit, not the 2 s file, ended the loop


@pytest.mark.freeswitch
def test_freeswitch_still_answers_as_captured():
    address, password = esl_setting(os.environ["CALLFORK_FS_ESL"])
    problems = displace_truth.compare(CAPTURED, displace_truth.capture(address, password), label="FreeSWITCH now")
    assert not problems, "\n".join(problems)
