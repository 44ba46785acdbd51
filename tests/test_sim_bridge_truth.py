"""The simulator's `bridge` against FreeSWITCH 1.10.12: every case of
tests/fixtures/fs-captures/bridge.json (captured by tests/bridge_truth.py; the facts: bridge.md
there) replayed on switch_sim over inbound ESL, as callfork's <Dial> drives it, and compared: each
leg's events in order with the hangup causes (the A-leg's from its bridge on), the A-leg's
variables callfork reads after EXECUTE_COMPLETE(bridge), the B-legs' variables, the replies of
`uuid_exists`/`uuid_kill` on B-legs, how long the bridge ran (whole-second timeouts, within the
spread FreeSWITCH showed), and what the caller heard while the legs rang (ringback, early media,
the callee) per 200 ms.
"""
import json

import pytest

import bridge_truth
from truth_capture import FIXTURES

CAPTURE = json.loads((FIXTURES / "bridge.json").read_text("utf-8"))
CASES = {case["name"]: case for case in bridge_truth.cases()}
B_VARIABLES = ("origination_uuid", "origination_caller_id_number", "origination_caller_id_name",
               "sip_h_X-VH-Reason", "callfork_dial_a", "leg_timeout", "execute_on_answer",
               "ignore_early_media", "hangup_cause", "originator", "originator_codec",
               "originate_early_media", "signal_bond", "last_bridge_to", "bridge_uuid",
               "other_loopback_leg_uuid", "loopback_leg", "endpoint_disposition")
SLACK_S = 1.0          # the timeouts count whole seconds of the clock, as FreeSWITCH does: one window


@pytest.fixture(scope="module")
def esl():
    with bridge_truth.on_simulator() as conn:
        yield conn


@pytest.mark.parametrize("want", CAPTURE["cases"], ids=[c["name"] for c in CAPTURE["cases"]])
def test_bridge_case_replays(esl, want, tmp_path):
    have = bridge_truth.run_case(esl, CASES[want["name"]], bridge_truth.sim_dtmf, record_dir=tmp_path)
    assert bridge_truth.compare([want], [have]) == []
    for leg, variables in want["b_variables"].items():
        kept = {k: v for k, v in variables.items() if k in B_VARIABLES}
        assert {k: v for k, v in have["b_variables"].get(leg, {}).items() if k in B_VARIABLES} == kept, leg
    assert [a for a, _r in have["replies"]] == [a for a, _r in want["replies"]]
    for (action, reply), (_a, got) in zip(want["replies"], have["replies"]):
        if not action.startswith("dtmf"):           # the simulator's caller presses keys differently
            assert got == reply, action
    assert abs(have["times"]["bridge_s"] - want["times"]["bridge_s"]) <= SLACK_S
    for key in ("heard_hz", "b_wrote_hz"):
        if key in want:
            windows = min(len(want[key]), len(have[key]))
            assert windows >= 5, (key, have[key])
            same = sum(a == b for a, b in zip(want[key][:windows], have[key][:windows]))
            assert same >= windows - 1, (key, want[key], have[key])
