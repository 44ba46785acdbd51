"""A small CallSession script against the FreeSWITCH simulator over TCP (issue "Foundation", tests):
answer, playback, record_session, play_and_get_digits, hangup; a hangup in the middle of a playback;
a caller who hangs up before `connect` completes. The ESL layer and the simulator meet only on the
wire, as they would with a real FreeSWITCH."""
import numpy as np
import pytest
import soundfile

from esl_app import CallGone, OutboundESLServer
from switch_sim import CallScript, Simulator


def tone(path, freq, seconds, rate=8000, amplitude=0.3):
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(str(path), (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16), rate)
    return str(path)


class Rig:
    """An outbound ESL server running `script(session)` for every call, and a simulator dialling it."""

    def __init__(self, script):
        self.results = []
        self.errors = []

        def handler(session):
            try:
                self.results.append(script(session))
            except Exception as exc:  # what the script raised is the result under test
                self.errors.append(exc)

        self.server = OutboundESLServer(listen=("127.0.0.1", 0), handler=handler)
        self.server.start()
        self.sim = Simulator(esl=("127.0.0.1", 0), socket_target=self.server.address)
        self.sim.start()

    def close(self):
        self.sim.stop()
        self.server.stop()


@pytest.fixture
def rig_for():
    rigs = []

    def make(script):
        rigs.append(Rig(script))
        return rigs[-1]

    yield make
    for rig in rigs:
        rig.close()


def test_answer_playback_record_session_pagd_hangup(tmp_path, rig_for):
    prompt = tone(tmp_path / "prompt.wav", 1000, 0.6)
    recording = tmp_path / "call.wav"

    def script(session):
        out = {}
        with session.subscribe("RECORD_START", "RECORD_STOP", "CHANNEL_HANGUP_COMPLETE") as events:
            session.answer()
            out["answered"] = session.answered
            out["playback"] = session.execute("playback", prompt).get("Application-Response")
            session.execute("record_session", str(recording))
            done = session.execute("play_and_get_digits",
                                   f"1 4 1 3000 # {prompt} silence_stream://250 pagd_digits \\d+ 2000")
            out["digits"] = done.get("variable_pagd_digits")
            out["read_result"] = done.get("variable_read_result")
            session.execute("stop_record_session", str(recording))
            session.hangup("NORMAL_CLEARING")
            names = []
            while "CHANNEL_HANGUP_COMPLETE" not in names:
                names.append(events.get(timeout=5).name)
            out["events"] = names
        return out

    rig = rig_for(script)
    # the caller speaks a 300 Hz tone and types 1234# once the second prompt plays
    call = rig.sim.place_call(CallScript(to="1000", audio=tone(tmp_path / "caller.wav", 300, 4.0),
                                         dtmf=[("1234#", 1.5)]))
    summary = call.wait(20)
    rig.server.stop(timeout=5)          # waits for the script to finish
    assert not rig.errors, rig.errors
    out = rig.results[0]
    assert out["answered"] and out["playback"] == "FILE PLAYED"
    assert (out["digits"], out["read_result"]) == ("1234", "success")
    assert out["events"][:2] == ["RECORD_START", "RECORD_STOP"] and out["events"][-1] == "CHANNEL_HANGUP_COMPLETE"
    assert summary["answered"] and summary["hangup_cause"] == "NORMAL_CLEARING"
    audio, rate = soundfile.read(str(recording), dtype="int16")
    spectrum = np.abs(np.fft.rfft(audio.astype(float)))
    freqs = np.fft.rfftfreq(len(audio), 1 / rate)
    assert spectrum[np.argmin(abs(freqs - 300))] > 10 * np.median(spectrum)   # the caller is in it


def test_hangup_in_the_middle_of_a_playback_raises_call_gone(tmp_path, rig_for):
    long_prompt = tone(tmp_path / "long.wav", 500, 5.0)

    def script(session):
        with session.subscribe("CHANNEL_HANGUP_COMPLETE") as done:
            session.answer()
            try:
                session.execute("playback", long_prompt)
            except CallGone as exc:
                return {"gone": True, "cause": exc.cause, "complete": done.get(timeout=5).name}
            return {"gone": False}

    rig = rig_for(script)
    rig.sim.place_call(CallScript(to="1000", hangup_after=1.0)).wait(20)
    rig.server.stop(timeout=5)
    assert not rig.errors, rig.errors
    assert rig.results == [{"gone": True, "cause": "NORMAL_CLEARING", "complete": "CHANNEL_HANGUP_COMPLETE"}]


def test_a_caller_who_hangs_up_before_connect_completes_does_not_break_the_server(rig_for):
    seen = []

    def script(session):
        seen.append(session.uuid)
        session.answer()
        session.execute("playback", "silence_stream://200")
        session.hangup()
        return "ok"

    rig = rig_for(script)
    # gone within the first media tick: the socket connects to a channel that is already hanging up
    early = rig.sim.place_call(CallScript(to="1000", hangup_after=0.001))
    early.wait(10)
    normal = rig.sim.place_call(CallScript(to="1001"))
    normal.wait(20)
    rig.server.stop(timeout=5)
    assert normal.uuid in seen          # the server still serves calls
    assert rig.results.count("ok") >= 1
    assert all(isinstance(e, CallGone) for e in rig.errors), rig.errors
