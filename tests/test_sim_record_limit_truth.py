"""The simulator's recording time limits against FreeSWITCH 1.10.12: every case of
tests/fixtures/fs-captures/record-limit.json (captured by tests/record_limit_truth.py) replayed on
switch_sim over inbound ESL. `uuid_record <uuid> start <wav> 2` started at 0.15, 0.5 and 0.85 s past a
wall-clock second stops at the second boundary two seconds after the second it started in (callfork's
REST Record `time_limit` is such a recording). The `record <wav> <limit>` app (limits 2 and 3, the far
end playing a tone, started at the same fractions) stops one second later, at the boundary limit + 1
seconds after its start's second: RECORD_STOP, EXECUTE_COMPLETE, record_ms / record_samples /
record_seconds and the WAV's length all say a run of limit + 1 - fraction seconds, as FreeSWITCH's
did. Each case starts when the clock reaches its fraction of a second (the tool waits for the clock).
"""
import json

import record_limit_truth
from truth_capture import FIXTURES, on_simulator

CAPTURE = json.loads((FIXTURES / "record-limit.json").read_text("utf-8"))


def test_record_limits_replay():
    got = on_simulator(record_limit_truth.replay)
    assert record_limit_truth.compare(CAPTURE["cases"], got) == []
