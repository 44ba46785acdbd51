"""The simulator's uuid_broadcast on a bridged call against FreeSWITCH 1.10.12: every case of
tests/fixtures/fs-captures/bridge-broadcast.json (captured by tests/broadcast_truth.py: `bleg`,
`aleg`, `both` while the A-leg runs an event-locked bridge) replayed on switch_sim over inbound ESL
and compared: each leg's events in order (the broadcast's app among them), the API's replies, what
the caller heard and what the callee heard per 200 ms. callfork's REST Speak to the B-leg of a
<Dial> bridge is such a broadcast (callfork/live_controls.py).
"""
import json

import pytest

import broadcast_truth
from truth_capture import FIXTURES

CAPTURE = json.loads((FIXTURES / "bridge-broadcast.json").read_text("utf-8"))
CASES = {case["name"]: case for case in broadcast_truth.cases()}


@pytest.fixture(scope="module")
def esl():
    import bridge_truth
    with bridge_truth.on_simulator() as conn:
        yield conn


@pytest.mark.parametrize("want", CAPTURE["cases"], ids=[c["name"] for c in CAPTURE["cases"]])
def test_broadcast_case_replays(esl, want, tmp_path):
    import bridge_truth
    have = broadcast_truth.run_case(esl, CASES[want["name"]], bridge_truth.sim_dtmf, record_dir=tmp_path)
    assert broadcast_truth.compare([want], [have]) == []
    assert have["replies"] == want["replies"]
    for key in ("heard_hz", "b_wrote_hz"):
        a, b = want[key], have[key]
        if key == "b_wrote_hz":
            # FreeSWITCH's recording of the B-leg began with the broadcast's first frame although it
            # was started 0.3 s before (the leg had written nothing), the simulator's begins with the
            # silence the leg wrote: leading silence is not compared
            a, b = _without_leading_silence(a), _without_leading_silence(b)
        windows = min(len(a), len(b))
        assert windows >= 5, (key, have[key])
        same = sum(x == y for x, y in zip(a[:windows], b[:windows]))
        assert same >= windows - 1, (key, want[key], have[key])


def _without_leading_silence(windows: list) -> list:
    while windows and windows[0] == 0:
        windows = windows[1:]
    return windows or [0] * 9
