"""The simulator's file_string:// against FreeSWITCH 1.10.12: every case of
tests/fixtures/fs-captures/file-string.json (captured by tests/file_string_truth.py: a parked
channel plays `file_string://silence_stream://1000!{A}!{B}` through `playback` (uuid_broadcast) or
`uuid_displace`, and {A} or {B} or nothing is deleted 0.3 s after the start) replayed on switch_sim
over inbound ESL and compared: the API's replies, the playback's events and the CUSTOM
filestring::open / close / fail events in order, when the filestring events came (within 0.15 s),
the tones the channel wrote (each within a 200 ms window of FreeSWITCH's length) and when the
displace's bug went. FreeSWITCH opens each part only when its turn comes, so a deleted part is
skipped (filestring::fail) and never heard.
"""
import json

import pytest

import file_string_truth
from truth_capture import FIXTURES

CAPTURE = json.loads((FIXTURES / "file-string.json").read_text("utf-8"))
CASES = {case["name"]: case for case in file_string_truth.cases()}


@pytest.fixture(scope="module")
def sim():
    from switch_sim import Simulator
    sim = Simulator(socket_target=("127.0.0.1", 9)).start()
    yield sim
    sim.stop()


@pytest.mark.parametrize("want", CAPTURE["cases"], ids=[c["name"] for c in CAPTURE["cases"]])
def test_file_string_case_replays(sim, want):
    have = file_string_truth.Case(sim.esl_address, "ClueCon", CASES[want["name"]]).run()
    assert file_string_truth.differences(want, have) == []
    assert len(file_string_truth.tone_runs(want["wrote_hz"])) >= 1
    for a, b in zip(want["events"], have["events"]):
        if a["event"] == "CUSTOM":
            assert abs(a["t"] - b["t"]) <= 0.15, (a, b)
