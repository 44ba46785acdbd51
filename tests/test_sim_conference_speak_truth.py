"""The simulator's mod_conference speech and recordings against a real FreeSWITCH 1.10.12
(tests/fixtures/fs-captures/conference-speak.json, taken by tests/conference_speak_capture.py): the
capture's own scenarios run again on the simulator, through its event socket, and are compared:
every API reply (say with and without `{tts_engine=...,tts_voice=...}`, saymember, `play say:`, a
room whose name holds "say", a member-only play of rendered speech, recording start/stop into .mp3
and .wav), who heard speech in each window, the rendered speech file, the recording files (format,
rate, channels, the room's tone in them), and the room's speech and recording events in order with
the stop-recording headers.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from conference_speak_capture import SpeakCapture, run
from switch_sim import Simulator
from switch_sim.caller import CallerModel, CallScript

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "fs-captures" / "conference-speak.json").read_text())
HEARD_DB, SILENT_DB = -45.0, -55.0      # speech heard above, nothing heard below (RMS, dBFS)
SPEECH_EVENTS = ("speak-text", "speak-text-member", "play-file-member", "play-file-member-done")
RECORDING_EVENTS = ("start-recording", "stop-recording", "del-member", "conference-destroy")


class SimSpeakCapture(SpeakCapture):
    """The capture's scenarios on the simulator: a member is a simulated channel that runs
    `conference <room>@default` then `park` with the capture's variables (the simulator's originate
    has no loopback pair whose far leg could speak), saying its tone from the start; what it heard is
    its caller's heard audio."""

    def __init__(self, address, password, workdir, sim=None):
        super().__init__(address, password, workdir)
        self.sim = sim

    def voiced_member(self, room, record, voice):
        audio = None
        if voice:
            t = np.arange(8000 * 60) / 8000
            audio = (np.sin(2 * np.pi * voice * t) * 10362).astype(np.int16)
        caller = CallerModel(CallScript(to="9999", keep_heard=True), audio)
        ch = self.sim.create_channel(direction="outbound", destination="9999",
                                     variables={"conference_controls": "none"},
                                     dialplan=[("conference", f"{room}@default"), ("park", "")], caller=caller,
                                     answer_first=True)
        return {"uuid": ch.uuid, "caller": caller, "rec_t": self.now()}

    def heard_samples(self, m):
        return m["caller"].heard_samples()


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    sim = Simulator(socket_target=("127.0.0.1", 9)).start()
    try:
        yield run(sim.esl_address, "ClueCon", tmp_path_factory.mktemp("speak"), capture_class=SimSpeakCapture,
                  sim=sim)
    finally:
        sim.stop()


def _heard(levels: dict) -> dict:
    return {member: {window: True if db >= HEARD_DB else False if db <= SILENT_DB else None
                     for window, db in windows.items()} for member, windows in levels.items()}


def test_api_replies(replay):
    want = [(r["cmd"], r["reply"]) for r in FIXTURE["replies"]]
    got = [(r["cmd"], r["reply"]) for r in replay["replies"]]
    assert got == want


@pytest.mark.parametrize("scenario", ["speak", "say_in_name"])
def test_who_hears_the_speech(replay, scenario):
    want = _heard(FIXTURE["scenarios"][scenario]["heard"])
    got = _heard(replay["scenarios"][scenario]["heard"])
    assert None not in [v for w in want.values() for v in w.values()], want
    assert got == want


def test_rendered_speech(replay):
    want, got = FIXTURE["scenarios"]["speak"]["rendered"], replay["scenarios"]["speak"]["rendered"]
    assert want["hung_up"] and want["rms_dbfs"] > HEARD_DB
    assert got["originate"] == want["originate"] and got["hung_up"] and got["rate"] == want["rate"]
    assert got["rms_dbfs"] > HEARD_DB and got["seconds"] >= 1.0


def test_speech_events(replay):
    def shape(events):
        return [(e["action"], e["member"], e.get("file")) for e in events if e["action"] in SPEECH_EVENTS
                or e["action"] == "play-file" and (e.get("file") or "").startswith("say:")]
    assert shape(replay["scenarios"]["speak"]["events"]) == shape(FIXTURE["scenarios"]["speak"]["events"])


def test_recording_files(replay):
    for name, want in FIXTURE["scenarios"]["recording"]["files"].items():
        got = replay["scenarios"]["recording"]["files"][name]
        assert got["exists"] and "error" not in got, (name, got)
        assert (got["format"], got["rate"], got["channels"]) == (want["format"], want["rate"], want["channels"]), name
        assert want["tone_dbfs"] > -20 and got["tone_dbfs"] > -20, (name, got)
        assert abs(got["seconds"] - want["seconds"]) < 1.0, (name, got["seconds"], want["seconds"])


def test_recording_events(replay):
    def shape(events):
        """(action, member, header names, Other-Recordings) in order, and the paths of each run of
        start/stop-recording events as a set: the recordings a room's end stops close in their own
        threads, in either order (two captures saw both)."""
        rows, paths = [], []
        for e in events:
            if e["action"] not in RECORDING_EVENTS:
                continue
            headers = e.get("headers") or {}
            rows.append((e["action"], e["member"], sorted(headers), headers.get("Other-Recordings")))
            if paths and paths[-1][0] == e["action"]:
                paths[-1][1].add(headers.get("Path"))
            else:
                paths.append((e["action"], {headers.get("Path")}))
        return rows, paths
    want = shape(FIXTURE["scenarios"]["recording"]["events"])
    got = shape(replay["scenarios"]["recording"]["events"])
    assert got == want
    stops = [e["headers"] for e in replay["scenarios"]["recording"]["events"] if e["action"] == "stop-recording"]
    for headers in stops:
        assert headers["Samplerate"] == "8000"
        assert int(headers["Milliseconds-Elapsed"]) == int(headers["Samples-Out"]) // 8


def test_play_say_to_a_member_stops_the_switch():
    """`play say:<text> <member>` crashed FreeSWITCH 1.10.12 (a profile without tts-engine: the
    member has no file node when conference_api_sub_play reads it): the simulator stops too, so
    nothing that sends it can pass on the simulator."""
    from truth_capture import api_response, esl_connect
    from waiting import wait_until
    sim = Simulator(socket_target=("127.0.0.1", 9)).start()
    try:
        ch = sim.create_channel(direction="outbound", destination="9999", variables={"conference_controls": "none"},
                                dialplan=[("conference", "crash@default"), ("park", "")],
                                caller=CallerModel(CallScript(to="9999")), answer_first=True)
        esl = esl_connect(sim.esl_address)
        room = wait_until(lambda: sim.conferences.get("crash") if getattr(sim, "conferences", None) else None,
                          5, "the room")
        member = wait_until(lambda: room.members and room.members[0], 5, "the member")
        esl.sock.sendall(f"api conference crash play say:{{tts_engine=flite,tts_voice=kal}}hi {member.id}\n\n".encode())
        with pytest.raises((EOFError, OSError)):
            api_response(esl, timeout=5)
        wait_until(lambda: ch.hungup, 5, "the member's channel gone with the switch")
    finally:
        sim.stop()
