"""How long a recording with a time limit lasts on FreeSWITCH 1.10.12: `uuid_record <uuid> start
<wav> <limit>` on a parked loopback leg, started at chosen fractions of a wall-clock second, captured
over raw inbound ESL and replayed on the simulator (tests/test_sim_record_limit_truth.py). callfork's
REST Record `time_limit` (verbs/api_recording.py) and `<Record>`'s session recordings are such
recordings.

What it showed (switch_ivr_record_session_event: `to = switch_epoch_time_now(NULL) + limit`, and the
media bug stops once `stop_time <= switch_epoch_time_now(NULL)`, both whole seconds): the recording
stops at the wall-clock second boundary `limit` seconds after the second it started in, so it runs
between limit - 1 and limit seconds: `limit - fraction` for a start `fraction` of a second past the
boundary (RECORD_STOP came 1.87, 1.51, 1.17 s after starts 0.16, 0.52, 0.86 s past a second). The WAV
of this parked leg, which writes nothing, held about 0.5 s less than that again (1340, 1000, 660 ms):
not modelled by the simulator, whose file holds the whole run. Kept per case: the start's fraction
of its second (the tool's clock at the api reply), when RECORD_STOP came, its
`variable_record_ms` and completion cause, and the WAV's length in ms.

    python tests/record_limit_truth.py capture --esl 127.0.0.1:8021:ClueCon --out tests/fixtures/fs-captures/record-limit.json
    python tests/record_limit_truth.py sim      # the same cases on the simulator, differences printed

Needs the freeswitch-test configuration (9999 answers and parks); no callfork, no port 8084. The
WAVs go to a directory both the switch and the tool can read.
"""
from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey
    monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid as uuidlib  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

import truth_capture  # noqa: E402

LIMIT_S = 2
FRACTIONS = (0.15, 0.5, 0.85)
TOLERANCE_MS = 120        # the fraction is the tool's clock at the api reply; a frame or two either way
WAV_DIR = Path(tempfile.gettempdir()) / "record-limit-truth"


def cases() -> list[dict]:
    return [{"name": f"limit_{LIMIT_S}_at_{fraction}", "fraction": fraction} for fraction in FRACTIONS]


def _wav_ms(path: str) -> int | None:
    import soundfile
    try:
        info = soundfile.info(path)
    except Exception:
        return None
    return int(round(info.frames * 1000 / info.samplerate))


def run_case(address, password: str, case: dict) -> dict:
    """One recording on a fresh parked loopback leg, started `fraction` past a second boundary."""
    WAV_DIR.mkdir(exist_ok=True)
    os.chmod(WAV_DIR, 0o755)
    path = str(WAV_DIR / f"{case['name']}-{uuidlib.uuid4().hex[:6]}.wav")
    with truth_capture.Switch(address, password) as switch:
        switch.esl.command("event json RECORD_STOP")
        now = time.time()
        wait = (case["fraction"] - (now - int(now))) % 1.0
        time.sleep(wait if wait > 0.05 else wait + 1.0)      # the tool waits for the clock, not the switch
        reply = switch.api(f"uuid_record {switch.uuid} start {path} {LIMIT_S}")
        started = time.time()
        stop = None
        deadline = started + LIMIT_S + 5
        while stop is None and time.time() < deadline:
            try:
                headers, body, _raw = switch.esl.frame(1.0)
            except (TimeoutError, OSError):
                continue
            if headers.get("Content-Type") == "text/event-json":
                event = json.loads(body)
                if event.get("Event-Name") == "RECORD_STOP" and event.get("Unique-ID") == switch.uuid:
                    stop = event
        stopped_after = round((time.time() - started) * 1000)
    wav_ms = _wav_ms(path)
    if os.path.exists(path):
        os.unlink(path)
    return {"name": case["name"], "reply": reply.strip(),
            "fraction": round(started - int(started), 3),
            "record_ms": int(stop["variable_record_ms"]) if stop and stop.get("variable_record_ms") else None,
            "completion_cause": stop.get("Record-Completion-Cause") if stop else None,
            "stopped_after_ms": stopped_after, "wav_ms": wav_ms}


def run(address, password: str) -> list[dict]:
    return [run_case(address, password, case) for case in cases()]


def capture(address, password: str) -> list[dict]:
    return run(address, password)


def replay(sim) -> list[dict]:
    return run(sim.esl_address, "ClueCon")


def expected_ms(case: dict) -> float:
    """When the capture says a recording stops: at the boundary `limit` seconds after its start's second."""
    return (LIMIT_S - case["fraction"]) * 1000


def compare(expected: list, got: list, label: str = "simulator") -> list:
    def differences(want, have):
        problems = []
        if have["reply"] != want["reply"] or have["completion_cause"] != want["completion_cause"]:
            problems.append(f"{want['name']}: FreeSWITCH {want['reply']} {want['completion_cause']}, "
                            f"{label} {have['reply']} {have['completion_cause']}")
        for case, who in ((want, "FreeSWITCH"), (have, label)):
            if abs(case["stopped_after_ms"] - expected_ms(case)) > TOLERANCE_MS:
                problems.append(f"{case['name']}: {who} stopped {case['stopped_after_ms']} ms after a start "
                                f"{case['fraction']} s past a second: {expected_ms(case):.0f} ms expected")
        return problems
    return truth_capture.compare_cases(expected, got, lambda case: case["name"], differences)


def main(argv=None) -> int:
    return truth_capture.main(argv, doc=__doc__, fixture="record-limit.json", capture=capture,
                              replay=replay, compare=compare, doc_paragraphs=2)


if __name__ == "__main__":
    sys.exit(main())
