"""What FreeSWITCH 1.10.12's `uuid_displace` answers and how long its media bug lives (what the REST
API's live-call Play runs, callfork/live_controls.py), captured on a real FreeSWITCH and replayed on
the simulator (switch_sim/apis/displace.py).

One parked channel that writes silence (`send_silence_when_idle=-1`, so the bug sees frames), two
WAV files written next to the capture (`{F}` 2 s of 700 Hz, `{S}` 0.3 s of 900 Hz). Each case is one
`uuid_displace` line (`{U}` the channel) and its reply; a case with `until` is then repeated — the
same `start` again, a probe that answers -ERR while the bug of that path still runs and +OK once it
has ended (and is stopped again at once) — until it answers `until`, which shows that the file's
end or the limit removed the bug, and after how long (`ended_after_s`). Usage errors, an unknown channel, a file that cannot be opened
(tts:// is not a file format), the same path twice, stop of a running, an ended and a never-started
bug, flags anywhere in the fifth argument (`mux`), any case of the action, file_string://.

    python tests/displace_truth.py capture --esl 127.0.0.1:8021:ClueCon --out tests/fixtures/fs-captures/uuid-displace.json
    python tests/displace_truth.py sim          # the same cases on the simulator, differences printed

Needs a FreeSWITCH with mod_commands, mod_loopback, mod_sndfile, mod_dptools (file_string) whose
default context parks 9999 (the freeswitch-test configuration), on this host (it reads the files).
tests/test_sim_displace.py replays the fixture.
"""
from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey
    monkey.patch_all()

import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid as uuidlib  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile  # noqa: E402

import truth_capture  # noqa: E402
from truth_capture import compare_cases, esl_connect, api_response  # noqa: E402
from waiting import wait_until  # noqa: E402

NOBODY = "00000000-0000-4000-8000-00000000d15c"


def cases() -> list[dict]:
    c = []

    def add(line, until=None):
        c.append({"line": line, "until": until})
    add("")
    add("{U} start")
    add("{U} bogus {F}")
    add(NOBODY + " start {F}")
    add("{U} start {F}.missing.wav")
    add("{U} start tts://flite|slt|hello")
    add("{U} start {F} 0 mux")
    add("{U} start {F} 0 mux")          # the same path again while it runs
    add("{U} stop {F}")
    add("{U} stop {F}")                 # nothing left to stop
    add("{U} stop {S}")                 # never started
    add("{U} start {S} 0 m", until="+OK Success\n")       # 0.3 s: the file's end removes the bug
    add("{U} stop {S}")
    add("{U} start {F} 1 ml", until="+OK Success\n")      # looping, but the 1 s limit removes it
    add("{U} stop {F}")
    add("{U} START file_string://{S}!{F}")
    add("{U} Stop file_string://{S}!{F}")
    add("{U} start {F}")                # no limit, no flags: replaces what the channel writes
    add("{U} stop {F}")
    return c


def _files(directory: Path) -> dict:
    t = np.arange(16000) / 8000
    f = directory / "displace-700.wav"
    s = directory / "displace-900.wav"
    soundfile.write(str(f), (6000 * np.sin(2 * np.pi * 700 * t)).astype(np.int16), 8000, subtype="PCM_16")
    soundfile.write(str(s), (6000 * np.sin(2 * np.pi * 900 * t[:2400])).astype(np.int16), 8000, subtype="PCM_16")
    return {"{F}": str(f), "{S}": str(s)}


def run(address, password="ClueCon", timeout: float = 10) -> list[dict]:
    esl = esl_connect(address, password)
    uuid = str(uuidlib.uuid4())

    def api(line: str) -> str:
        esl.sock.sendall(("api " + line + "\n\n").encode("utf-8"))
        return api_response(esl)
    directory = Path(tempfile.mkdtemp(prefix="displace-truth-"))
    names = dict(_files(directory), **{"{U}": uuid})

    def real(line):
        for k, v in names.items():
            line = line.replace(k, v)
        return line
    reply = api(f"originate {{origination_uuid={uuid},send_silence_when_idle=-1}}loopback/9999/default &park()")
    assert reply.startswith("+OK"), reply
    results = []
    try:
        for case in cases():
            got = {"line": case["line"], "until": case["until"], "reply": api(real(f"uuid_displace {case['line']}"))}
            if case["until"]:
                started = time.monotonic()
                probe = {}

                def ended(line=case["line"], until=case["until"]):
                    probe["reply"] = api(real(f"uuid_displace {line}"))
                    return probe["reply"] == until
                try:
                    wait_until(ended, timeout, "the displace's end", interval=0.05)
                except AssertionError:
                    pass   # the last probe's reply is what the switch said: recorded as it is
                got["probe"] = probe["reply"]
                got["ended_after_s"] = round(time.monotonic() - started, 1)
            results.append(got)
    finally:
        api(f"uuid_kill {uuid}")
        esl.close()
    return results


def capture(address, password: str) -> list[dict]:
    return run(address, password)


def replay(sim) -> list[dict]:
    return run(sim.esl_address)


def compare(expected: list, got: list, label: str = "simulator") -> list:
    """Replies and probes exactly; when a bug ended by itself: at its file's end within 0.3 s of
    FreeSWITCH, at a limit no later than the limit (FreeSWITCH counts whole epoch seconds, so a
    1 s limit ends the bug 0 to 1 s after the start, at random)."""
    def differences(want, have):
        problems = [f"uuid_displace {want['line']}: {key}: FreeSWITCH {want.get(key)!r}, {label} {have.get(key)!r}"
                    for key in ("reply", "probe") if want.get(key) != have.get(key)]
        if "ended_after_s" in want:
            ended = have.get("ended_after_s", -1)
            limit = int(want["line"].split()[3]) if len(want["line"].split()) > 3 else 0
            ok = 0 <= ended <= limit + 0.2 if limit else abs(want["ended_after_s"] - ended) <= 0.3
            if not ok:
                problems.append(f"uuid_displace {want['line']}: the bug ended after {want['ended_after_s']} s "
                                f"on FreeSWITCH, {ended} s on the {label}")
        return problems
    return compare_cases(expected, got, lambda case: case["line"], differences)


def main(argv=None) -> int:
    return truth_capture.main(argv, doc=__doc__, fixture="uuid-displace.json", capture=capture,
                              replay=replay, compare=compare, doc_paragraphs=2)


if __name__ == "__main__":
    sys.exit(main())
