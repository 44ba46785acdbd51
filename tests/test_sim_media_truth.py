"""The simulator is no kinder than FreeSWITCH: every scenario of tests/media_truth.py, captured on
a real FreeSWITCH 1.10.12 with the jambonz mod_audio_fork (tests/fixtures/fs-captures/
media-truth-jambonz.json), replayed on the simulator over TCP ESL and compared measurement by
measurement (tolerances in media_truth.TOLERANCES).

What the capture pins: a parked channel writes frames only when send_silence_when_idle was set
before media came up (else a bidirectional stream's audio is never heard and its marks never come
back); `sleep` reads it on every call; a stereo fork sends nothing while nothing is written; media
bugs run in attach order (a recording attached before a bidirectional fork misses its audio; a
recording restarted with RECORD_APPEND after the fork has it); `record` keeps no CNG frame unless
record_fill_cng; killAudio empties the module's buffer and breaks a playback; how a fork's socket
closes on hangup; that the module's send buffer does not overrun within seconds; playback event
timing."""
import json
import os

import pytest

import media_truth
from conftest import CAPTURES

CAPTURED = json.loads((CAPTURES / "media-truth-jambonz.json").read_text())["scenarios"]


@pytest.fixture(scope="module")
def simulator():
    target = media_truth.Simulator().start()
    yield target
    target.stop()


def test_every_scenario_was_captured():
    assert set(CAPTURED) == set(media_truth.SCENARIOS)


@pytest.mark.parametrize("name", sorted(media_truth.SCENARIOS))
def test_simulator_matches_freeswitch(simulator, name):
    got = media_truth.run(simulator, name)
    problems = media_truth.compare(CAPTURED[name]["result"], got)
    assert not problems, f"{name}: " + "; ".join(problems)


@pytest.mark.freeswitch
@pytest.mark.parametrize("name", sorted(media_truth.SCENARIOS))
def test_freeswitch_still_behaves_as_captured(name):
    """The capture stays true: the same scenarios on the FreeSWITCH of CALLFORK_FS_ESL."""
    target = media_truth.RealFreeSWITCH(os.environ["CALLFORK_FS_ESL"])
    got = media_truth.run(target, name)
    problems = media_truth.compare(CAPTURED[name]["result"], got, "this FreeSWITCH")
    assert not problems, f"{name}: " + "; ".join(problems)
