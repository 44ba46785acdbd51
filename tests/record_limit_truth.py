"""How long a recording with a time limit lasts on FreeSWITCH 1.10.12: `uuid_record <uuid> start
<wav> <limit>` on a parked loopback leg, and the `record <wav> <limit>` app (limits 2 and 3) on a
loopback leg whose far end (9998) plays a tone, each started at chosen fractions of a wall-clock
second, captured over raw inbound ESL and replayed on the simulator
(tests/test_sim_record_limit_truth.py). callfork's REST Record `time_limit` (verbs/api_recording.py)
and `<Record>`'s session recordings are uuid_record recordings; callfork's `record` app calls
(verbs/recording.py RecordAppLimit) use the app.

What it showed. uuid_record (switch_ivr_record_session_event: `to = switch_epoch_time_now(NULL) +
limit`, and the media bug stops once `stop_time <= switch_epoch_time_now(NULL)`, both whole seconds):
the recording stops at the wall-clock second boundary `limit` seconds after the second it started in,
so it runs between limit - 1 and limit seconds: `limit - fraction` for a start `fraction` of a second
past the boundary. The WAV of this parked leg, which writes nothing, held about 0.5 s less than that
again: not modelled by the simulator, whose file holds the whole run. The record app
(switch_ivr_record_file: `start = switch_epoch_time_now(NULL)`, and its loop breaks once
`switch_epoch_time_now(NULL) - start > limit`) stops one second later: at the boundary `limit + 1`
seconds after its start's second, so it runs between limit and limit + 1 seconds (`limit + 1 -
fraction`, a frame more at most); RECORD_STOP (no Record-Completion-Cause) and the app's
CHANNEL_EXECUTE_COMPLETE (Application-Response `_none_`) come then, record_ms and the WAV (the tone
fills every frame) hold the whole run, record_samples = 8 * record_ms, record_seconds its whole
seconds. Kept per uuid_record case: the start's fraction of its second (the tool's clock at the api
reply), when RECORD_STOP came, its `variable_record_ms` and completion cause, and the WAV's length in
ms; per record-app case: the start's fraction and when RECORD_STOP and EXECUTE_COMPLETE came (all from
the switch's Event-Date-Timestamp: RECORD_START is the start), the completion cause, the
Application-Response, record_ms / record_seconds / record_samples at completion, and the WAV's length.

    python tests/record_limit_truth.py capture --esl 127.0.0.1:8021:ClueCon --out tests/fixtures/fs-captures/record-limit.json
    python tests/record_limit_truth.py sim      # the same cases on the simulator, differences printed

Needs the freeswitch-test configuration (9999 answers and parks, 9998 plays a tone); no callfork, no port 8084. The
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
APP_LIMITS_S = (2, 3)
FRACTIONS = (0.15, 0.5, 0.85)
TOLERANCE_MS = 120        # the fraction is the tool's clock at the api reply; a frame or two either way
WAV_DIR = Path(tempfile.gettempdir()) / "record-limit-truth"


def cases() -> list[dict]:
    session = [{"name": f"limit_{LIMIT_S}_at_{fraction}", "kind": "uuid_record", "limit": LIMIT_S,
                "fraction": fraction} for fraction in FRACTIONS]
    return session + [{"name": f"app_limit_{limit}_at_{fraction}", "kind": "app", "limit": limit,
                       "fraction": fraction} for limit in APP_LIMITS_S for fraction in FRACTIONS]


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
    return {"name": case["name"], "kind": "uuid_record", "limit": LIMIT_S, "reply": reply.strip(),
            "fraction": round(started - int(started), 3),
            "record_ms": int(stop["variable_record_ms"]) if stop and stop.get("variable_record_ms") else None,
            "completion_cause": stop.get("Record-Completion-Cause") if stop else None,
            "stopped_after_ms": stopped_after, "wav_ms": wav_ms}


APP_VARIABLES = ("record_ms", "record_seconds", "record_samples")


def _event_seconds(event: dict) -> float:
    return int(event["Event-Date-Timestamp"]) / 1e6


def run_app_case(address, password: str, case: dict) -> dict:
    """The `record <wav> <limit>` app on a loopback leg whose far end (9998) plays a 440 Hz tone,
    run by `sendmsg ... execute` once the clock is `fraction` past a second; the start and stop are
    the switch's own RECORD_START / RECORD_STOP event timestamps."""
    WAV_DIR.mkdir(exist_ok=True)
    os.chmod(WAV_DIR, 0o755)
    path = str(WAV_DIR / f"{case['name']}-{uuidlib.uuid4().hex[:6]}.wav")
    esl = truth_capture.esl_connect(address, password)
    uuid = str(uuidlib.uuid4())
    events: dict = {}
    try:
        esl.command("event json RECORD_START RECORD_STOP CHANNEL_EXECUTE_COMPLETE")
        esl.send(f"api originate {{origination_uuid={uuid}}}loopback/9998/default &park()\n\n")
        reply = truth_capture.api_response(esl)
        assert reply.startswith("+OK"), reply
        now = time.time()
        wait = (case["fraction"] - (now - int(now))) % 1.0
        time.sleep(wait if wait > 0.05 else wait + 1.0)      # the tool waits for the clock, not the switch
        headers, _body, _raw = esl.command(
            f"sendmsg {uuid}\ncall-command: execute\nexecute-app-name: record\n"
            f"execute-app-arg: {path} {case['limit']}\n\n")
        assert headers.get("Reply-Text", "").startswith("+OK"), headers
        deadline = time.time() + case["limit"] + 6
        while "CHANNEL_EXECUTE_COMPLETE" not in events and time.time() < deadline:
            try:
                headers, body, _raw = esl.next_frame(1.0)
            except (TimeoutError, OSError):
                continue
            if headers.get("Content-Type") != "text/event-json":
                continue
            event = json.loads(body)
            name = event.get("Event-Name")
            if event.get("Unique-ID") != uuid or name in events:
                continue
            if name != "CHANNEL_EXECUTE_COMPLETE" or event.get("Application") == "record":
                events[name] = event
        esl.send(f"api uuid_kill {uuid}\n\n")
        truth_capture.api_response(esl)
    finally:
        esl.close()
    wav_ms = _wav_ms(path)
    if os.path.exists(path):
        os.unlink(path)
    start, stop, done = (events.get(n) for n in ("RECORD_START", "RECORD_STOP", "CHANNEL_EXECUTE_COMPLETE"))
    assert start and stop and done, f"{case['name']}: events {sorted(events)}"
    started = _event_seconds(start)
    return {"name": case["name"], "kind": "app", "limit": case["limit"],
            "fraction": round(started - int(started), 3),
            "stopped_after_ms": round((_event_seconds(stop) - started) * 1000),
            "completed_after_ms": round((_event_seconds(done) - started) * 1000),
            "completion_cause": stop.get("Record-Completion-Cause"),
            "application_response": done.get("Application-Response"),
            "variables": {name: done.get(f"variable_{name}") for name in APP_VARIABLES},
            "wav_ms": wav_ms}


def run(address, password: str) -> list[dict]:
    return [(run_app_case if case["kind"] == "app" else run_case)(address, password, case) for case in cases()]


def capture(address, password: str) -> list[dict]:
    return run(address, password)


def replay(sim) -> list[dict]:
    return run(sim.esl_address, "ClueCon")


def expected_ms(case: dict) -> float:
    """When the capture says a recording stops. uuid_record: at the boundary `limit` seconds after its
    start's second. The record app: one second later (its loop stops once the whole seconds since its
    start exceed the limit), so it runs between limit and limit + 1 seconds."""
    limit = case.get("limit", LIMIT_S)
    return (limit + (1 if case.get("kind") == "app" else 0) - case["fraction"]) * 1000


def _app_problems(case: dict, who: str) -> list[str]:
    """What in one record-app case (of FreeSWITCH or the simulator) disagrees with expected_ms: the
    stop, the app's completion, record_ms / record_samples / record_seconds, and the WAV's length (the
    far end writes a tone, so the file holds the whole run)."""
    expected = expected_ms(case)
    problems = []
    variables = case["variables"]
    record_ms = int(variables["record_ms"] or -1)
    for what, value in (("RECORD_STOP came", case["stopped_after_ms"]),
                        ("EXECUTE_COMPLETE came", case["completed_after_ms"]),
                        ("record_ms was", record_ms), ("the WAV held", case["wav_ms"] or -1)):
        if abs(value - expected) > TOLERANCE_MS:
            problems.append(f"{case['name']}: on {who} {what} {value} ms after a start {case['fraction']} s "
                            f"past a second: {expected:.0f} ms expected")
    if variables["record_samples"] != str(record_ms * 8) or variables["record_seconds"] != str(record_ms // 1000):
        problems.append(f"{case['name']}: on {who} record_ms {record_ms} but {variables}")
    return problems


def compare(expected: list, got: list, label: str = "simulator") -> list:
    def differences(want, have):
        problems = []
        if want.get("kind") == "app":
            for key in ("completion_cause", "application_response"):
                if have.get(key) != want.get(key):
                    problems.append(f"{want['name']}: {key} FreeSWITCH {want.get(key)!r}, {label} {have.get(key)!r}")
            return problems + _app_problems(want, "FreeSWITCH") + _app_problems(have, label)
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
