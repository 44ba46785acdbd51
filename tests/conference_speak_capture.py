"""What mod_conference (FreeSWITCH 1.10.12, stock `default` profile: no tts-engine) does with speech
and recordings asked for over the API, captured for the Conference REST API's Speak and Record:
who hears `say`, `saymember` and `play say:` with per-request `{tts_engine=...,tts_voice=...}`, a
room whose name holds "say", a member-only play of speech rendered to a file by a helper channel,
and recordings into .mp3 (mod_shout) and .wav files: the API's replies, the start-/stop-recording
events, and the files.

Members are silent mod_loopback calls made as tests/conference_capture.py makes them (the A leg
runs `conference:<room>@default,park` inline, `uuid_record` with RECORD_WRITE_ONLY keeps what it
heard); what each heard per window is stored as its RMS level (dBFS), not the audio. Speech is
rendered by `originate {RECORD_WRITE_ONLY=true,...}loopback/9999/default
'record_session:<file>,speak:flite|<voice>|${callfork_speak_text}' inline` (the text in a channel
variable), and is complete when the helper's CHANNEL_HANGUP_COMPLETE has come.

    python tests/conference_speak_capture.py capture --esl 127.0.0.1:8021:ClueCon --out tests/fixtures/fs-captures/conference-speak.json

The same `run(address, password)` runs on the simulator in tests/test_sim_conference_speak_truth.py,
which compares the two. No port 8084 and no callfork number is used (no lock needed).
"""
from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey
    monkey.patch_all()

import math  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import uuid as uuidlib  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from conference_capture import MARGIN_S, Capture, goertzel_dbfs  # noqa: E402
from truth_capture import capture_main  # noqa: E402

TTS = "{tts_engine=flite,tts_voice=kal}"
SPEECH_WINDOW_S = 4.5        # longer than each sentence below takes to speak (flite: about 3 s)
TONE = 500                   # Hz: what the recorded room's member says
RECORD_WINDOW_S = 2.0        # how much of the room is recorded before the stop


def quote(text: str) -> str:
    from fsargs import quote_api_arg
    return quote_api_arg(text)


def rms_dbfs(samples) -> float:
    import numpy as np
    if len(samples) == 0:
        return -120.0
    x = np.asarray(samples, dtype=np.float64) / 32768.0
    return round(20 * math.log10(max(math.sqrt(float(np.mean(x * x))), 1e-6)), 1)


class SpeakCapture(Capture):
    def __init__(self, address, password, workdir: Path):
        super().__init__(address, password)
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.replies = []
        self.room_names = {}
        self.member_labels = {}

    def call(self, line: str) -> str:
        """`api line`, kept with the room names and paths written as placeholders."""
        reply = self.api(line)
        self.replies.append({"cmd": self.generic(line), "reply": self.generic(reply)})
        return reply

    def generic(self, text: str) -> str:
        """Room names, the work directory and member ids as placeholders ({SPEAK}, {DIR}, {M1})."""
        for real, label in self.room_names.items():
            text = text.replace(real, label)
        text = text.replace(str(self.dir), "{DIR}")
        for member_id, label in self.member_labels.items():
            text = re.sub(rf"(saymember |to member | ){member_id}(\n|$| )", rf"\g<1>{label}\g<2>", text)
        return text

    def room(self, label: str) -> str:
        name = f"cfcap-{label}-" + uuidlib.uuid4().hex[:6]
        self.room_names[name] = "{" + label.upper() + "}"
        return name

    def joined(self, room: str, count: int, record: bool = True, voices=()) -> list[dict]:
        """`count` members in `room`, silent but for `voices` (a tone in Hz for the first ones)."""
        members = []
        for i in range(count):
            m = self.voiced_member(room, record, voices[i] if i < len(voices) else None)
            self.wait_events(lambda h, u=m["uuid"]: h.get("Action") == "add-member" and h.get("Unique-ID") == u)
            members.append(m)
        for e in self.events:
            h = e["headers"]
            for m in members:
                if h.get("Action") == "add-member" and h.get("Unique-ID") == m["uuid"]:
                    m["id"] = h.get("Member-ID")
        for m in members:
            self.member_labels[m["id"]] = "{M%d}" % (len(self.member_labels) + 1)
        return members

    def voiced_member(self, room: str, record: bool, voice) -> dict:
        m = self.member(room, record=record)
        if voice:
            self.say(m, voice)
        return m

    def heard_samples(self, m: dict):
        """What member `m` heard (int16 samples, 8 kHz), from the start of its recording."""
        import soundfile
        self.api(f"uuid_record {m['uuid']} stop {m['heard']}")
        data, rate = soundfile.read(m["heard"], dtype="int16")
        os.unlink(m["heard"])
        return data

    def window(self, windows: list, name: str, seconds: float = SPEECH_WINDOW_S) -> None:
        start = self.now()
        wait_s = seconds
        import gevent
        gevent.sleep(wait_s)       # a measurement window: this much of what the members hear is kept
        windows.append((name, start, self.now()))

    def heard(self, members: list, windows: list) -> dict:
        """Per member and window: the RMS level (dBFS) of what the member heard, and the level of
        the recorded room's tone."""
        out = {}
        rate = 8000
        for i, m in enumerate(members):
            data = self.heard_samples(m)
            levels = {}
            for name, start, end in windows:
                a = int(max(0.0, start + MARGIN_S - m["rec_t"]) * rate)
                b = int(max(0.0, end - MARGIN_S - m["rec_t"]) * rate)
                levels[name] = rms_dbfs(data[a:b])
            out[f"member{i + 1}"] = levels
        return out

    def render(self, text: str, voice: str = "kal") -> dict:
        """Speech rendered to a WAV by a helper loopback channel; waits for the helper's hangup."""
        import soundfile
        helper = str(uuidlib.uuid4())
        path = self.dir / "speech.wav"
        if path.exists():
            path.unlink()
        from callfork.originate import variable_block
        block = variable_block({"origination_uuid": helper, "RECORD_WRITE_ONLY": "true",
                                "callfork_speak_text": text})
        apps = quote(f"record_session:{path},speak:flite|{voice}|${{callfork_speak_text}}")
        since = self.now()
        reply = self.api(f"originate {block}loopback/9999/default {apps} inline")
        done = self.wait_events(lambda h: h.get("Event-Name") == "CHANNEL_HANGUP_COMPLETE"
                                and h.get("Unique-ID") == helper, timeout=30, since=since)
        info = {"originate": reply.strip().replace(helper, "{HELPER}"), "hung_up": done, "path": str(path)}
        try:
            data, rate = soundfile.read(str(path), dtype="int16")
            info.update(seconds=round(len(data) / rate, 2), rate=rate, rms_dbfs=rms_dbfs(data))
        except Exception as exc:  # noqa: BLE001 - what the capture saw
            info.update(error=str(exc))
        return info


def recording_facts(path: str) -> dict:
    """What a recording file is: soundfile's reading of it, and the recorded tone's level."""
    import soundfile
    facts = {"exists": os.path.exists(path)}
    if not facts["exists"]:
        return facts
    facts["bytes"] = os.path.getsize(path)
    with open(path, "rb") as f:
        facts["head"] = f.read(4).hex()
    try:
        info = soundfile.info(path)
        data, rate = soundfile.read(path, dtype="int16", always_2d=True)
        facts.update(format=info.format, rate=rate, channels=info.channels,
                     seconds=round(len(data) / rate, 2),
                     tone_dbfs=goertzel_dbfs(data[:, 0], rate, TONE))
    except Exception as exc:  # noqa: BLE001
        facts["error"] = str(exc)
    return facts


RECORDING_HEADERS = ("Action", "Path", "Other-Recordings", "Samples-Out", "Samplerate", "Milliseconds-Elapsed",
                     "Error")


def room_events(cap: SpeakCapture, rooms, since: float) -> list[dict]:
    """The rooms' conference::maintenance events: their action, member and (recordings) headers."""
    out = []
    for e in cap.events:
        h = e["headers"]
        if e["t"] < since or h.get("Conference-Name") not in rooms:
            continue
        row = {"action": h.get("Action"), "member": cap.member_labels.get(h.get("Member-ID"))}
        if h.get("Action") in ("start-recording", "stop-recording"):
            row["headers"] = {k: cap.generic(h[k]) for k in RECORDING_HEADERS if k in h}
        if h.get("File"):
            row["file"] = cap.generic(h["File"])
        out.append(row)
    return out


def scenario_speak(cap: SpeakCapture) -> dict:
    room = cap.room("speak")
    since = cap.now()
    members = cap.joined(room, 3)
    ids = [m["id"] for m in members]
    windows = []
    cap.call(f"conference {room} say {TTS}Hello everyone, this is the room speaking.")
    cap.window(windows, "say_braces")
    cap.call(f"conference {room} say Hello without an engine.")
    cap.call(f"conference {room} saymember {ids[0]} {TTS}Hello member one, only you.")
    cap.window(windows, "saymember_braces")
    cap.call(f"conference {room} play {quote('say:' + TTS + 'Hello again everyone, this is a play.')}")
    cap.window(windows, "play_say_room")
    # never `play say:<text> <member id>` on a profile without a tts-engine: conference_member_say
    # returns success without a file node and conference_api_sub_play then reads member->fnode
    # (NULL) for its event: FreeSWITCH 1.10.12 crashes (it did, the first time this ran)
    rendered = cap.render("Hello member one, this speech was rendered first.")
    start = cap.now()
    cap.call(f"conference {room} play {rendered['path']} {ids[0]}")
    cap.wait_action("play-file-member-done", uuid=members[0]["uuid"], since=start, timeout=15)
    windows.append(("play_rendered_member", start, cap.now()))
    rendered["path"] = cap.generic(rendered["path"])
    heard = cap.heard(members, windows)
    cap.hung_up(*members)
    events = room_events(cap, {room}, since)
    return {"windows": [w[0] for w in windows], "heard": heard, "rendered": rendered,
            "events": [e for e in events if e["action"] not in ("start-talking", "stop-talking")]}


def scenario_say_in_name(cap: SpeakCapture) -> dict:
    """A room whose name holds "say": the say command finds its text after the first "say" of the
    command line (conference_api.c: strstr)."""
    room = cap.room("essay")
    members = cap.joined(room, 1)
    windows = []
    cap.call(f"conference {room} say {TTS}Hello essay room.")
    cap.window(windows, "say_braces")
    cap.call(f"conference {room} play {quote('say:' + TTS + 'Hello essay room, a play.')}")
    cap.window(windows, "play_say_room")
    heard = cap.heard(members, windows)
    cap.hung_up(*members)
    return {"windows": [w[0] for w in windows], "heard": heard}


def scenario_recording(cap: SpeakCapture) -> dict:
    room = cap.room("rec")
    since = cap.now()
    members = cap.joined(room, 2, record=False, voices=(TONE,))
    paths = {name: str(cap.dir / f"{name}.{name.split('_')[0]}")
             for name in ("mp3_stopped", "wav_stopped", "mp3_room_end", "wav_room_end")}
    for name in ("mp3_stopped", "wav_stopped"):
        t = cap.now()
        cap.call(f"conference {room} recording start {paths[name]}")
        cap.wait_action("start-recording", room=room, since=t)
    cap.window([], "recorded", RECORD_WINDOW_S)
    for name in ("mp3_stopped", "wav_stopped"):
        t = cap.now()
        cap.call(f"conference {room} recording stop {paths[name]}")
        cap.wait_events(lambda h, p=paths[name]: h.get("Action") == "stop-recording" and h.get("Path") == p,
                        timeout=10, since=t)
    for name in ("mp3_room_end", "wav_room_end"):
        t = cap.now()
        cap.call(f"conference {room} recording start {paths[name]}")
        cap.wait_action("start-recording", room=room, since=t)
    cap.window([], "recorded", RECORD_WINDOW_S)
    cap.call(f"conference {room} recording stop {cap.dir}/never-started.mp3")
    t = cap.now()
    cap.hung_up(*members)
    cap.wait_action("conference-destroy", room=room, since=t, timeout=10)
    cap.call(f"conference {room} recording stop all")
    files = {name: recording_facts(path) for name, path in paths.items()}
    for path in paths.values():
        if os.path.exists(path):
            os.unlink(path)
    events = room_events(cap, {room}, since)
    return {"files": files,
            "events": [e for e in events if e["action"] not in ("start-talking", "stop-talking", "floor-change")]}


SCENARIOS = {"speak": scenario_speak, "say_in_name": scenario_say_in_name, "recording": scenario_recording}


def run(address, password, workdir: Path, capture_class=None, **kw) -> dict:
    """Every scenario on the switch at `address`: {"scenarios": ..., "replies": [...]}
    (`capture_class`: a SpeakCapture that makes members its own way, e.g. on the simulator)."""
    cap = (capture_class or SpeakCapture)(address, password, workdir, **kw)
    try:
        results = {name: scenario(cap) for name, scenario in SCENARIOS.items()}
        return {"scenarios": results, "replies": cap.replies}
    finally:
        cap.close()


def capture(address, password) -> dict:
    record = run(address, password, Path("/tmp/callfork-conference-speak-capture"))
    esl = Capture(address, password)
    try:
        version = esl.api("version").strip()
    finally:
        esl.close()
    return {"freeswitch": version, "doc": " ".join(__doc__.split("\n\n")[0:2]).replace("\n", " "), **record}


def main(argv):
    return capture_main(argv, doc=__doc__, capture=capture)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
