"""The simulator does what FreeSWITCH 1.10.12 does with a channel whose outbound socket app is killed
(a callfork node or worker killed with -9): every case of tests/socket_kill_truth.py, captured on a
real FreeSWITCH (tests/fixtures/fs-captures/socket-kill.json), replayed on the simulator: the
channel's events after the kill, whether it still exists 3 s later, whether the fork's WebSocket
closed and whether audio still reached it."""
import json
import os

import pytest

import socket_kill_truth
from conftest import CAPTURES
from truth_capture import esl_setting, on_simulator

CAPTURED = json.loads((CAPTURES / "socket-kill.json").read_text(encoding="utf-8"))["cases"]


def test_the_capture_has_every_case():
    assert [c["case"] for c in CAPTURED] == [name for name, _commands in socket_kill_truth.CASES]


def test_simulator_matches_freeswitch():
    got = on_simulator(socket_kill_truth.replay)
    problems = socket_kill_truth.compare(CAPTURED, got)
    assert not problems, "\n".join(problems)


def test_what_freeswitch_does_in_short():
    by_case = {c["case"]: c for c in CAPTURED}
    # parked in the socket app (nothing running): the app returns, the dialplan ends, NORMAL_CLEARING
    for name in ("killed", "killed after resume"):
        case = by_case[name]
        assert [e["Event-Name"] for e in case["events_after_kill"]][-2:] == [
            "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"], name
        assert case["events_after_kill"][-1]["Hangup-Cause"] == "NORMAL_CLEARING"
        assert case["fork_closed"] and not case["channel_exists_after_s"]["3.0"]
    # while an app the dead process started runs (callfork's `sleep` slices of 600 s), nothing
    # happens: the caller is left with the fork streaming and nobody answering it
    sleeping = by_case["killed during sleep 600000"]
    assert sleeping["events_after_kill"] == []
    assert sleeping["channel_exists_after_s"]["3.0"] and sleeping["fork_frames_in_last_second"]
    assert not sleeping["fork_closed"]


@pytest.mark.freeswitch
def test_freeswitch_still_behaves_as_captured():
    got = socket_kill_truth.capture(*esl_setting(os.environ["CALLFORK_FS_ESL"]))
    problems = socket_kill_truth.compare(CAPTURED, got)
    assert not problems, "\n".join(problems)
