"""When FreeSWITCH 1.10.12's `file_string://a!b!c` opens its files, captured on a real FreeSWITCH over
raw inbound ESL and replayed on the simulator (tests/test_sim_file_string_truth.py).

Each case parks a channel (`originate {origination_uuid=U,send_silence_when_idle=-1}
loopback/9999/default &park()`), records what it writes (`uuid_record` of its loopback partner, the
parked 9999 leg, with RECORD_READ_ONLY: a recording of U itself does not hold what uuid_displace
writes), then
plays `file_string://silence_stream://1000!{A}!{B}` ({A} 0.6 s of 700 Hz, {B} 0.6 s of 900 Hz, WAV
files written by the tool for this case) through `playback` (`uuid_broadcast U playback::... aleg`)
or `uuid_displace U start ...`, and, 0.3 s after the command was sent, deletes {B} (or {A}, or
nothing: the control). The case ends when the playback's EXECUTE_COMPLETE came (broadcast) or when
the displace's bug has gone (the same `start` again answers +OK, then is stopped; as
tests/displace_truth.py probes). Kept: the API replies, the channel's PLAYBACK_START / PLAYBACK_STOP
(Playback-Status, Playback-File-Path) and the playback's EXECUTE / EXECUTE_COMPLETE
(Application-Response), the CUSTOM filestring::open / close / fail events (File), each with its
time after the command, after how long the bug went, and what the channel wrote per 200 ms
(dominant frequency, 0 for silence).

What it showed (mod_dptools' file_string: `next_file` opens a part only when the previous one
ended; one that cannot be opened fires filestring::fail and is skipped): a file deleted after the
playback started but before its turn is skipped, silently for the playback (PLAYBACK_STOP
`done`, FILE PLAYED); a deleted last file ends the playback early.

    python tests/file_string_truth.py capture --esl 127.0.0.1:8021:ClueCon --out tests/fixtures/fs-captures/file-string.json
    python tests/file_string_truth.py sim          # the same cases on the simulator, differences printed

Needs the freeswitch-test configuration (9999 answers and parks), mod_dptools, mod_sndfile,
mod_commands, on this host (it reads the files); no callfork, no port 8084.
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

import numpy as np  # noqa: E402
import soundfile  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

import truth_capture  # noqa: E402
from bridge_truth import heard_summary  # noqa: E402
from truth_capture import compare_cases, esl_connect  # noqa: E402
from waiting import wait_until  # noqa: E402

WORK_DIR = Path(tempfile.gettempdir()) / "file-string-truth"   # readable and writable by both switches
PLAYED = "file_string://silence_stream://1000!{A}!{B}"
EVENTS = ("PLAYBACK_START", "PLAYBACK_STOP", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE")
HEADERS = ("Playback-Status", "Playback-File-Path", "Application", "Application-Data",
           "Application-Response", "File", "Event-Subclass")
DELETE_AFTER_S = 0.3


def cases() -> list[dict]:
    return [{"name": f"{how}_delete_{which}", "how": how, "delete": which}
            for how in ("broadcast", "displace") for which in ("none", "B", "A")]


def _files(directory: Path, tag: str) -> dict:
    t = np.arange(4800) / 8000
    names = {}
    for key, freq in (("{A}", 700), ("{B}", 900)):
        path = directory / f"{tag}-{freq}.wav"
        soundfile.write(str(path), (6000 * np.sin(2 * np.pi * freq * t)).astype(np.int16), 8000, subtype="PCM_16")
        os.chmod(path, 0o644)
        names[key] = str(path)
    return names


class Case:
    """One case on the switch behind `address`: its own connection, channel and files."""

    def __init__(self, address, password, case: dict):
        self.case = case
        self.esl = esl_connect(address, password)
        self.esl.command("event json ALL")
        self.uuid = str(uuidlib.uuid4())
        WORK_DIR.mkdir(exist_ok=True)
        os.chmod(WORK_DIR, 0o777)
        self.files = _files(WORK_DIR, uuidlib.uuid4().hex[:8])
        self.record = str(WORK_DIR / f"wrote-{case['name']}-{uuidlib.uuid4().hex[:6]}.wav")
        self.played = self._real(PLAYED)
        self.events: list[dict] = []
        self.replies: list[list] = []

    def _real(self, text: str) -> str:
        for key, value in self.files.items():
            text = text.replace(key, value)
        return text.replace("{U}", self.uuid)

    def _clean(self, text: str) -> str:
        for key, value in self.files.items():
            text = text.replace(value, key)
        return text.replace(self.uuid, "{U}")

    def api(self, line: str, keep: bool = True) -> str:
        """Send `api line`; events read meanwhile are kept."""
        self.esl.send("api " + line + "\n\n")
        while True:
            headers, body, _raw = self.esl.frame(10)
            if headers.get("Content-Type") == "api/response":
                reply = body.decode("utf-8")
                if keep:
                    self.replies.append([self._clean(line), reply])
                return reply
            self._event(headers, body)

    def _event(self, headers: dict, body: bytes) -> None:
        if headers.get("Content-Type") != "text/event-json":
            return
        ev = json.loads(body)
        name = ev.get("Event-Name")
        mine = ev.get("Unique-ID") == self.uuid and name in EVENTS
        if name in ("CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE") and ev.get("Application") != "playback":
            mine = False
        if name == "CUSTOM" and str(ev.get("Event-Subclass", "")).startswith("filestring::"):
            mine = True
        if mine:
            kept = {"event": name}
            kept.update({k: self._clean(str(ev[k])) for k in HEADERS if k in ev})
            kept["t"] = round(time.monotonic() - self.started, 2) if hasattr(self, "started") else None
            self.events.append(kept)

    @staticmethod
    def _until_probe(events: list) -> list:
        """The events before the displace probe's own file_string opened its first part again."""
        opened = [i for i, e in enumerate(events) if e.get("Event-Subclass") == "filestring::open"
                  and e.get("File", "").startswith("silence_stream://")]
        return events[:opened[1]] if len(opened) > 1 else events

    def _pump(self, seconds: float) -> None:
        """Read events for up to `seconds` (returns at the first quiet moment after them)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                headers, body, _raw = self.esl.frame(max(0.01, end - time.monotonic()))
            except (TimeoutError, OSError):
                return
            self._event(headers, body)

    def run(self) -> dict:
        how, which = self.case["how"], self.case["delete"]
        reply = self.api(f"originate {{origination_uuid={self.uuid},send_silence_when_idle=-1}}"
                         f"loopback/9999/default &park()", keep=False)
        assert reply.startswith("+OK"), reply
        out = {"name": self.case["name"]}
        try:
            partner = self.api(f"uuid_getvar {self.uuid} other_loopback_leg_uuid", keep=False).strip()
            self.api(f"uuid_setvar {partner} RECORD_READ_ONLY true", keep=False)
            self.api(f"uuid_record {partner} start {self.record}", keep=False)
            self._pump(0.3)
            self.started = time.monotonic()
            if how == "broadcast":
                self.api(f"uuid_broadcast {self.uuid} playback::{self.played} aleg")
            else:
                self.api(f"uuid_displace {self.uuid} start {self.played}")
            self._pump(DELETE_AFTER_S - (time.monotonic() - self.started))
            if which != "none":
                os.unlink(self.files["{%s}" % which])
            if how == "broadcast":
                wait_until(lambda: self._pump(0.05) or any(
                    e["event"] == "CHANNEL_EXECUTE_COMPLETE" for e in self.events), 10, "the playback's end",
                    interval=0)
            else:
                probe = f"uuid_displace {self.uuid} start {self.played}"
                wait_until(lambda: self._pump(0.05) or self.api(probe, keep=False).startswith("+OK"), 10,
                           "the displace's end", interval=0)
                out["ended_after_s"] = round(time.monotonic() - self.started, 1)
                self.api(f"uuid_displace {self.uuid} stop {self.played}", keep=False)
            self._pump(0.3)
            self.api(f"uuid_record {partner} stop {self.record}", keep=False)
        finally:
            self.api(f"uuid_kill {self.uuid}", keep=False)
            self.esl.close()
            for path in list(self.files.values()):
                if os.path.exists(path):
                    os.unlink(path)
        out["replies"] = self.replies
        out["events"] = self._until_probe(self.events)
        out["wrote_hz"] = heard_summary(self.record, 0.0, 6.0)
        if os.path.exists(self.record):
            os.unlink(self.record)
        return out


def run(address, password="ClueCon") -> list[dict]:
    return [Case(address, password, case).run() for case in cases()]


def capture(address, password: str) -> list[dict]:
    return run(address, password)


def replay(sim) -> list[dict]:
    return run(sim.esl_address)


def tone_runs(windows: list) -> list:
    """The tones of `wrote_hz` in order, each with its number of 200 ms windows (silence left out)."""
    runs: list = []
    for hz in windows:
        if hz == 0:
            continue
        if runs and runs[-1][0] == hz:
            runs[-1][1] += 1
        else:
            runs.append([hz, 1])
    return runs


def event_shape(events: list) -> list:
    """The events without their times."""
    return [{k: v for k, v in e.items() if k != "t"} for e in events]


def differences(want: dict, have: dict, label: str = "simulator") -> list:
    """Replies and events (in order, without times) exactly; the tones the channel wrote in order,
    each as long as on FreeSWITCH within a window; the displace's end within 0.4 s."""
    name = want["name"]
    problems = []
    if want["replies"] != have["replies"]:
        problems.append(f"{name}: replies: FreeSWITCH {want['replies']!r}, {label} {have['replies']!r}")
    if event_shape(want["events"]) != event_shape(have["events"]):
        problems.append(f"{name}: events: FreeSWITCH {event_shape(want['events'])!r}, "
                        f"{label} {event_shape(have['events'])!r}")
    a, b = tone_runs(want["wrote_hz"]), tone_runs(have["wrote_hz"])
    if [r[0] for r in a] != [r[0] for r in b] or any(abs(x[1] - y[1]) > 1 for x, y in zip(a, b)):
        problems.append(f"{name}: tones written: FreeSWITCH {a!r}, {label} {b!r}")
    if "ended_after_s" in want and abs(want["ended_after_s"] - have.get("ended_after_s", -9)) > 0.4:
        problems.append(f"{name}: the displace ended after {want['ended_after_s']} s on FreeSWITCH, "
                        f"{have.get('ended_after_s')} s on the {label}")
    return problems


def compare(expected: list, got: list, label: str = "simulator") -> list:
    return compare_cases(expected, got, lambda case: case["name"],
                         lambda want, have: differences(want, have, label))


def main(argv=None) -> int:
    return truth_capture.main(argv, doc=__doc__, fixture="file-string.json", capture=capture,
                              replay=replay, compare=compare, doc_paragraphs=2)


if __name__ == "__main__":
    sys.exit(main())
