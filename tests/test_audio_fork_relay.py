"""The relay end to end over real sockets: a fake mod_audio_fork client (websockets' ClientProtocol,
subprotocol audio.drachtio.org, metadata frame + 20 ms L16 frames from a WAV) <-> Relay/StreamSession <-> a
real app WebSocket server (tests/wsapp.py). FreeSWITCH's part (the `api` callable) is
tests/audio_fork_fakes.FakeSwitch."""
import base64
import json
import math
import socket
import statistics
import time

import numpy as np
import pytest
import soundfile
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode

from audio_fork import StreamSession, StreamSpec
from audio_fork.errors import StreamStartError

from audio_fork_fakes import FakeSwitch, g711_ulaw_decode, g711_ulaw_encode, module_start_args
from relay_support import CALL, app, relay  # noqa: F401 (fixtures)
from waiting import wait_until
from ws_endpoint import connect
from wsapp import AppServer



def make_wav(path, rate, seconds, channels=1, seed=7):
    """Speech-like noise (left/mono) and a 440 Hz tone (right), written as a real WAV file."""
    n = int(rate * seconds)
    rng = np.random.default_rng(seed)
    noise = (rng.standard_normal(n) * 3000).clip(-32000, 32000)
    tone = 8000 * np.sin(2 * math.pi * 440 * np.arange(n) / rate)
    data = noise if channels == 1 else np.stack([noise, tone], axis=1)
    soundfile.write(str(path), data.astype(np.int16), rate, subtype="PCM_16")
    return path


def wav_messages(path, coalesce_at=None):
    """20 ms messages as mod_audio_fork sends them (L16 LE, interleaved), with optionally one
    message carrying two frames (seen in the captures)."""
    data, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
    pcm = data.astype("<i2").tobytes()
    size = rate // 50 * 2 * data.shape[1]
    msgs = [pcm[i:i + size] for i in range(0, len(pcm) - size + 1, size)]
    if coalesce_at is not None:
        msgs[coalesce_at:coalesce_at + 2] = [msgs[coalesce_at] + msgs[coalesce_at + 1]]
    return pcm[: len(msgs and pcm) // size * size], msgs, rate


def spec(app_url, **kw):
    base = dict(stream_id="st-1", call_uuid=CALL, url=app_url, account_id="500025", connect_timeout=3.0)
    base.update(kw)
    return StreamSpec(**base)


class Events:
    def __init__(self):
        self.items = []

    def __call__(self, name, detail):
        self.items.append((name, detail))

    def names(self):
        return [n for n, _ in self.items]


def media_of(conn):
    return [json.loads(m) for m in conn.texts() if json.loads(m).get("event") == "media"]


def test_vobiz_l16_8k_byte_exact_with_coalesced_frame(tmp_path, relay, app):
    pcm, msgs, _ = wav_messages(make_wav(tmp_path / "in.wav", 8000, 1.0), coalesce_at=10)
    assert 640 in {len(m) for m in msgs} and {len(m) for m in msgs} <= {320, 640}
    fs = FakeSwitch(msgs)
    events = Events()
    s = StreamSession(spec(app.url, headers=["Authorization: Bearer secret"]), relay, fs.api, events)
    s.start()
    conn = app.wait_connection()
    n_frames = len(pcm) // 320
    conn.wait_for(lambda c: len(media_of(c)) == n_frames)

    # the command FreeSWITCH got, as mod_audio_fork reads it
    args = module_start_args(fs.commands[0], "jambonz")
    assert args["mix"] == "mono" and args["rate"] == "8k" and args["bug"] == "callfork_st-1"
    assert args["bidi"] is None and args["uuid"] == CALL
    assert json.loads(args["metadata"])["streamId"] == "st-1"
    assert fs.module.subprotocol == "audio.drachtio.org"

    # handshake headers to the app
    assert conn.header("Authorization") == "Bearer secret"
    assert conn.header("User-Agent").startswith("callfork/")

    texts = [json.loads(t) for t in conn.texts()]
    start = texts[0]
    assert start["event"] == "start" and start["sequenceNumber"] == 0
    assert start["start"]["streamId"] == "st-1" and start["start"]["callId"] == CALL
    assert start["start"]["mediaFormat"] == {"encoding": "audio/x-l16", "sampleRate": 8000}
    media = media_of(conn)
    assert b"".join(base64.b64decode(m["media"]["payload"]) for m in media) == pcm
    assert all(len(base64.b64decode(m["media"]["payload"])) == 320 for m in media)
    assert [m["sequenceNumber"] for m in media] == list(range(1, n_frames + 1))
    assert [m["media"]["chunk"] for m in media] == list(range(1, n_frames + 1))
    stamps = [int(m["media"]["timestamp"]) for m in media]
    assert all(isinstance(m["media"]["timestamp"], str) for m in media)
    assert [b - a for a, b in zip(stamps, stamps[1:])] == [20] * (n_frames - 1)
    assert relay.frames_in == n_frames and relay.streams_live == 1

    s.send_dtmf("5")
    conn.wait_for(lambda c: any(json.loads(t)["event"] == "dtmf" for t in c.texts()))
    dtmf = [json.loads(t) for t in conn.texts() if json.loads(t)["event"] == "dtmf"][0]
    assert dtmf["dtmf"]["digit"] == "5" and dtmf["dtmf"]["track"] == "inbound"

    s.stop("done")
    assert s.wait(5)
    conn.wait_for(lambda c: c.closed.is_set())
    assert conn.close_code == 1000
    assert all(json.loads(t)["event"] != "stop" for t in conn.texts())  # Vobiz: no in-band stop
    assert any(c.startswith("uuid_audio_fork %s stop callfork_st-1" % CALL) for c in fs.commands)
    assert events.names()[:2] == ["app_connected", "started"] and events.names()[-1] == "ended"
    assert events.items[-1][1] == {"reason": "done"}
    s.stop("again")  # idempotent
    assert events.names().count("ended") == 1
    fs.module.closed.wait(5)
    assert fs.module.closed.is_set()


def test_twilio_mulaw_both_tracks(tmp_path, relay, app):
    pcm, msgs, _ = wav_messages(make_wav(tmp_path / "st.wav", 8000, 0.5, channels=2))
    fs = FakeSwitch(msgs)
    s = StreamSession(spec(app.url, dialect="twilio", encoding="mulaw", track="both",
                           custom_parameters={"tier": "gold"}, account_id="AC1"), relay, fs.api, Events())
    s.start()
    conn = app.wait_connection()
    n = len(pcm) // 640
    conn.wait_for(lambda c: len(media_of(c)) == 2 * n)
    assert module_start_args(fs.commands[0], "jambonz")["mix"] == "stereo"
    texts = [json.loads(t) for t in conn.texts()]
    assert texts[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    start = texts[1]
    assert start["event"] == "start" and start["start"]["tracks"] == ["inbound", "outbound"]
    assert start["start"]["customParameters"] == {"tier": "gold"} and start["start"]["callSid"] == CALL
    assert start["start"]["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    samples = np.frombuffer(pcm, dtype="<i2")
    expected = {"inbound": bytes(g711_ulaw_encode(int(v)) for v in samples[0::2]),
                "outbound": bytes(g711_ulaw_encode(int(v)) for v in samples[1::2])}
    media = media_of(conn)
    for track in ("inbound", "outbound"):
        mine = [m for m in media if m["media"]["track"] == track]
        assert [m["media"]["chunk"] for m in mine] == [str(i) for i in range(1, n + 1)]
        assert [m["media"]["timestamp"] for m in mine] == [str(20 * i) for i in range(n)]
        assert b"".join(base64.b64decode(m["media"]["payload"]) for m in mine) == expected[track]
        assert all(m["streamSid"] == "st-1" for m in mine)
    seqs = [int(t["sequenceNumber"]) for t in texts[1:]]
    assert seqs == list(range(1, len(seqs) + 1))
    s.stop("done")
    conn.wait_for(lambda c: c.closed.is_set())
    last = json.loads(conn.texts()[-1])
    assert last["event"] == "stop" and last["stop"] == {"accountSid": "AC1", "callSid": CALL}
    assert conn.close_code == 1000


def test_outbound_track_is_the_right_channel_16k_big_endian(tmp_path, relay, app):
    pcm, msgs, _ = wav_messages(make_wav(tmp_path / "st16.wav", 16000, 0.4, channels=2))
    assert {len(m) for m in msgs} == {1280}
    fs = FakeSwitch(msgs)
    s = StreamSession(spec(app.url, track="outbound", sample_rate=16000, l16_byte_order="be"), relay, fs.api,
                      Events())
    s.start()
    conn = app.wait_connection()
    n = len(pcm) // 1280
    conn.wait_for(lambda c: len(media_of(c)) == n)
    args = module_start_args(fs.commands[0], "jambonz")
    assert (args["mix"], args["rate"]) == ("stereo", "16k")
    right = np.frombuffer(pcm, dtype="<i2")[1::2]
    media = media_of(conn)
    assert {m["media"]["track"] for m in media} == {"outbound"}
    assert b"".join(base64.b64decode(m["media"]["payload"]) for m in media) == right.astype(">i2").tobytes()
    s.stop()


def _peak_hz(pcm, rate):
    x = np.frombuffer(pcm, dtype="<i2").astype(float)
    spec_ = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec_) * rate / len(x))


def test_twilio_l16_24k_is_resampled_from_a_16k_fork(tmp_path, relay, app):
    rate = 16000
    tone = (8000 * np.sin(2 * math.pi * 440 * np.arange(rate) / rate)).astype("<i2").tobytes()
    msgs = [tone[i:i + 640] for i in range(0, len(tone), 640)]
    fs = FakeSwitch(msgs)
    s = StreamSession(spec(app.url, dialect="twilio", encoding="l16", sample_rate=24000), relay, fs.api, Events())
    s.start()
    conn = app.wait_connection()
    assert module_start_args(fs.commands[0], "jambonz")["rate"] == "16k"
    conn.wait_for(lambda c: len(media_of(c)) >= 45)
    fs.module.sent_all.wait(5)
    media = media_of(conn)
    payloads = [base64.b64decode(m["media"]["payload"]) for m in media]
    assert all(len(p) == 960 for p in payloads)  # 20 ms at 24 kHz
    assert abs(_peak_hz(b"".join(payloads), 24000) - 440) < 5
    s.stop()


# --- bidirectional: app audio to the module -------------------------------------------------------

def _tone(rate, seconds, freq=440):
    return (8000 * np.sin(2 * math.pi * freq * np.arange(int(rate * seconds)) / rate)).astype("<i2").tobytes()


def _start_bidi(relay, app, may_kill_audio=None, **kw):
    fs = FakeSwitch([])
    events = Events()
    s = StreamSession(spec(app.url, bidirectional=True, **kw), relay, fs.api, events,
                      may_kill_audio=may_kill_audio)
    s.start()
    conn = app.wait_connection()
    fs.started.wait(3)
    fs.module.connected.wait(3)
    conn.wait_for(lambda c: any(json.loads(t)["event"] == "start" for t in c.texts()))
    return s, fs, conn, events


@pytest.mark.parametrize("ctype,rate", [("audio/x-l16", 8000), ("audio/x-mulaw", 8000), ("audio/x-l16", 16000),
                                        ("audio/x-l16", 24000)])
def test_vobiz_play_audio_reaches_the_module_as_paced_8k_frames(relay, app, ctype, rate):
    s, fs, conn, events = _start_bidi(relay, app)
    assert module_start_args(fs.commands[0], "jambonz")["bidi"] == (True, True, "8000")
    seconds = 0.3
    pcm = _tone(rate, seconds)
    payload = pcm if ctype == "audio/x-l16" else bytes(g711_ulaw_encode(int(v)) for v in np.frombuffer(pcm, "<i2"))
    for i in range(0, len(payload), len(payload) // 3):  # faster than real time, in chunks
        chunk = payload[i:i + len(payload) // 3]
        conn.send_text(json.dumps({"event": "playAudio", "streamId": "st-1",
                                   "media": {"contentType": ctype, "sampleRate": rate,
                                             "payload": base64.b64encode(chunk).decode()}}))
    conn.send_text('{"event":"checkpoint","streamId":"st-1","name":"cp1"}')
    conn.wait_for(lambda c: any(json.loads(t)["event"] == "playedStream" for t in c.texts()), timeout=5)
    mod = fs.module
    frames = [f for _, f in mod.binary]
    times = [t for t, _ in mod.binary]
    expect_frames = int(seconds * 50)
    assert all(len(f) == 320 for f in frames)
    assert abs(len(frames) - expect_frames) <= 2
    played_at = conn.times[[json.loads(t)["event"] for t in conn.texts()].index("playedStream")]
    assert played_at >= times[-1] - 0.005  # the checkpoint is acked once its audio went out
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert 0.015 <= statistics.median(gaps) <= 0.025
    assert times[-1] - times[0] >= (len(frames) - 1) * 0.020 * 0.85
    got = b"".join(frames)
    if rate == 8000 and ctype == "audio/x-l16":
        assert got[: len(pcm)] == pcm
    elif ctype == "audio/x-mulaw":
        expected = np.array([g711_ulaw_decode(b) for b in payload], dtype="<i2").tobytes()
        assert got[: len(expected)] == expected
    else:
        assert abs(_peak_hz(got, 8000) - 440) < 8
    assert ("played", {"name": "cp1"}) in events.items
    assert relay.frames_out >= len(frames)
    s.stop()


def test_clear_audio_voids_checkpoints_and_stops_feeding_the_module(relay, app):
    s, fs, conn, events = _start_bidi(relay, app)
    pcm = _tone(8000, 2.0)
    conn.send_text(json.dumps({"event": "playAudio", "media": {"contentType": "audio/x-l16", "sampleRate": 8000,
                                                               "payload": base64.b64encode(pcm).decode()}}))
    conn.send_text('{"event":"checkpoint","name":"never"}')
    fs.module.wait_for(lambda m: len(m.binary) >= 5)
    conn.send_text('{"event":"clearAudio","streamId":"st-1"}')
    conn.wait_for(lambda c: any(json.loads(t)["event"] == "clearedAudio" for t in c.texts()))
    count = len(fs.module.binary)
    conn.send_text('{"event":"checkpoint","name":"after"}')  # nothing queued: acked at once
    conn.wait_for(lambda c: any(json.loads(t).get("name") == "after" for t in c.texts()))
    names = [json.loads(t).get("name") for t in conn.texts() if json.loads(t)["event"] == "playedStream"]
    assert names == ["after"]
    assert count < 100 and len(fs.module.binary) <= count + 5
    # no killAudio unless the call allows it (no may_kill_audio here): on FreeSWITCH it also
    # breaks whatever app the channel runs, e.g. a <Play> beside the stream
    assert '{"type":"killAudio"}' not in fs.module.texts
    assert ("cleared", {"marks": ["never"]}) in events.items
    s.stop()


@pytest.mark.parametrize("allowed", [True, False])
def test_clear_audio_kills_the_modules_audio_when_the_call_allows_it(relay, app, allowed):
    asked = []

    def may_kill_audio():
        asked.append(True)
        return allowed
    s, fs, conn, events = _start_bidi(relay, app, may_kill_audio=may_kill_audio)
    pcm = _tone(8000, 2.0)
    conn.send_text(json.dumps({"event": "playAudio", "media": {"contentType": "audio/x-l16", "sampleRate": 8000,
                                                               "payload": base64.b64encode(pcm).decode()}}))
    fs.module.wait_for(lambda m: len(m.binary) >= 14)   # the 8-frame start, then paced frames
    conn.send_text('{"event":"clearAudio","streamId":"st-1"}')
    conn.wait_for(lambda c: any(json.loads(t)["event"] == "clearedAudio" for t in c.texts()))
    assert asked
    if not allowed:
        assert '{"type":"killAudio"}' not in fs.module.texts
        s.stop()
        return
    fs.module.wait_for(lambda m: '{"type":"killAudio"}' in m.texts)
    # what the module's prebuffer held is topped up to its threshold with silence first (it then
    # moves into the playout, which killAudio empties): nothing stale starts the next utterance
    audio = sum(len(f) for _, f in fs.module.binary if any(f)) // 2
    pad = sum(len(f) for _, f in fs.module.binary if not any(f)) // 2
    assert audio >= 1280 + 640
    assert (audio - 1280) % 640 + pad in (0, 640), (audio, pad)
    s.stop()


def test_an_utterance_reaches_the_module_prebuffer_at_once_then_is_paced(relay, app):
    s, fs, conn, events = _start_bidi(relay, app)
    sent = time.monotonic()
    conn.send_text(json.dumps({"event": "playAudio", "media": {"contentType": "audio/x-l16", "sampleRate": 8000,
                                                               "payload": base64.b64encode(_tone(8000, 1.0)).decode()}}))
    fs.module.wait_for(lambda m: len(m.binary) >= 20)
    times = [t for t, _ in fs.module.binary]
    # mod_audio_fork plays nothing before its prebuffer holds 1280 samples (160 ms): those go
    # at once, not over 160 ms; then one frame per 20 ms
    assert times[7] - sent < 0.1
    assert times[7] - times[0] < 0.02
    gaps = [b - a for a, b in zip(times[8:20], times[9:20])]
    assert 0.015 <= statistics.median(gaps) <= 0.025
    s.stop()


def test_twilio_marks_are_echoed_when_played_and_on_clear(relay, app):
    s, fs, conn, events = _start_bidi(relay, app, dialect="twilio", encoding="mulaw")
    ulaw = bytes(g711_ulaw_encode(int(v)) for v in np.frombuffer(_tone(8000, 0.1), "<i2"))
    conn.send_text(json.dumps({"event": "mark", "streamSid": "st-1", "mark": {"name": "idle"}}))
    conn.send_text(json.dumps({"event": "media", "streamSid": "st-1", "media": {"payload": base64.b64encode(ulaw).decode()}}))
    conn.send_text(json.dumps({"event": "mark", "streamSid": "st-1", "mark": {"name": "played"}}))
    conn.send_text(json.dumps({"event": "media", "media": {"payload": base64.b64encode(ulaw * 30).decode()}}))
    conn.send_text(json.dumps({"event": "mark", "mark": {"name": "pending"}}))

    def marks(c):
        return [json.loads(t)["mark"]["name"] for t in c.texts() if json.loads(t)["event"] == "mark"]
    conn.wait_for(lambda c: "played" in marks(c))
    assert marks(conn) == ["idle", "played"]
    conn.send_text('{"event":"clear"}')
    conn.wait_for(lambda c: "pending" in marks(c))
    assert marks(conn) == ["idle", "played", "pending"]
    assert len(fs.module.binary) < 150
    s.stop()


def test_drachtio_flavour_plays_app_audio_as_files(relay, app):
    """drachtio's module discards server audio: playAudio is written as a WAV file and played with
    uuid_broadcast; the checkpoint behind it is acked once that file has played."""
    import wave
    fs = FakeSwitch([], flavor="drachtio")
    events = Events()
    s = StreamSession(spec(app.url, bidirectional=True, flavor="drachtio"), relay, fs.api, events)
    s.start()
    conn = app.wait_connection()
    conn.wait_for(lambda c: any(json.loads(t)["event"] == "start" for t in c.texts()))
    assert module_start_args(fs.commands[0], "drachtio")["bidi"] is None
    assert "true" not in fs.commands[0].split(" ")
    audio = np.arange(-2000, 2000, 5, dtype="<i2").tobytes()          # 100 ms
    conn.send_text(json.dumps({"event": "playAudio", "media": {"contentType": "audio/x-l16", "sampleRate": 8000,
                                                               "payload": base64.b64encode(audio).decode()}}))
    conn.send_text("garbage that is not json")
    sent = time.monotonic()
    conn.send_text('{"event":"checkpoint","name":"played"}')
    conn.wait_for(lambda c: any(json.loads(t).get("name") == "played" for t in c.texts()))
    assert time.monotonic() - sent >= 0.09
    (broadcast,) = [c for c in fs.commands if c.startswith("uuid_broadcast ")]
    _, uuid, path, leg = broadcast.split(" ")
    assert uuid == s.call_uuid and leg == "aleg"
    with wave.open(path, "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        assert wav.readframes(wav.getnframes()) == audio
    conn.send_text('{"event":"clearAudio"}')
    conn.wait_for(lambda c: any(json.loads(t)["event"] == "clearedAudio" for t in c.texts()))
    assert any(c.startswith("uuid_break ") for c in fs.commands)
    assert s.protocol_errors == 1 and s.state == "streaming" and not [n for n, _ in events.items if n == "unsupported"]
    s.stop()


def test_vobiz_app_stop_ends_the_stream(relay, app):
    s, fs, conn, events = _start_bidi(relay, app)
    conn.send_text('{"event":"stop","streamId":"st-1"}')
    assert s.wait(5)
    conn.wait_for(lambda c: c.closed.is_set())
    assert conn.close_code == 1000
    assert "app_stop" in events.names() and events.items[-1] == ("ended", {"reason": "app_stop"})
    assert any(" stop callfork_st-1" in c for c in fs.commands)
    assert all(json.loads(t)["event"] in ("start",) for t in conn.texts())  # no stop JSON back


def test_hostile_app_messages_are_ignored_and_the_app_is_still_heard(relay, app):
    """JSON nested too deeply for the parser, garbage, binary: each is counted as ignored, and the
    app's next message (its stop) is still honoured: the reader never dies."""
    s, fs, conn, events = _start_bidi(relay, app)
    conn.send_text("[" * 1200)
    conn.send_text('{"event":"playAudio","media":' + "{" * 5000)
    conn.send_text("not json")
    conn.send_text('{"event":"stop","streamId":"st-1"}')
    assert s.wait(5)
    assert s.protocol_errors == 3 and relay.protocol_errors >= 3
    assert events.items[-1] == ("ended", {"reason": "app_stop"})


def test_idle_stream_pings_the_app(relay, app):
    fs = FakeSwitch([])
    s = StreamSession(spec(app.url, keepalive_seconds=0.1), relay, fs.api, Events())
    s.start()
    conn = app.wait_connection()
    conn.wait_for(lambda c: c.pings >= 2, timeout=3)
    s.stop()


# --- failures ---------------------------------------------------------------------------------------

def test_app_refusing_the_upgrade_fails_start_before_freeswitch_is_touched(relay):
    refusing = AppServer(reject_status=403).start()
    try:
        fs = FakeSwitch([])
        events = Events()
        s = StreamSession(spec(refusing.url), relay, fs.api, events)
        with pytest.raises(StreamStartError) as info:
            s.start()
        assert "403" in str(info.value)
        assert fs.commands == []
        assert events.names() == ["app_failed", "ended"] and "403" in events.items[0][1]["error"]
        assert s.state == "failed" and s.wait(0)
    finally:
        refusing.stop()


def test_app_closing_mid_stream_ends_the_stream_and_stops_the_fork(tmp_path, relay, app):
    _, msgs, _ = wav_messages(make_wav(tmp_path / "long.wav", 8000, 2.0))
    fs = FakeSwitch(msgs, interval=0.02)
    events = Events()
    s = StreamSession(spec(app.url), relay, fs.api, events)
    s.start()
    conn = app.wait_connection()
    conn.wait_for(lambda c: len(media_of(c)) >= 5)
    conn.close(1000, "bye")
    assert s.wait(5)
    assert ("app_closed", {"code": 1000}) in events.items
    assert events.items[-1] == ("ended", {"reason": "app_closed"})
    assert any(" stop callfork_st-1" in c for c in fs.commands)
    fs.module.closed.wait(5)
    assert fs.module.closed.is_set() and fs.module.close_code == 1000
    assert relay.sessions() == []


def test_an_app_lost_while_media_goes_out_is_reported_once(tmp_path, relay, app):
    """An app that says goodbye and drops its socket while media is going out can be noticed twice,
    by the reader (its Close) and by a send (EPIPE or a reset), in either order: one
    app_failed/app_closed event (so one DroppedStream), not one each."""
    _, msgs, _ = wav_messages(make_wav(tmp_path / "long.wav", 8000, 2.0))
    fs = FakeSwitch(msgs, interval=0.02)
    events = Events()
    s = StreamSession(spec(app.url), relay, fs.api, events)
    s.start()
    conn = app.wait_connection()
    conn.wait_for(lambda c: len(media_of(c)) >= 5)

    conn.close(1000, "bye")
    conn.sock.shutdown(socket.SHUT_RDWR)  # ... and gone: the media still going out meets a reset
    assert s.wait(5)
    lost = [n for n, _ in events.items if n in ("app_failed", "app_closed")]
    assert len(lost) == 1, lost
    assert events.items[-1] == ("ended", {"reason": lost[0]})


def test_wrong_token_and_unknown_stream_get_403(relay, app):
    fs = FakeSwitch([], connect=False)
    s = StreamSession(spec(app.url, connect_timeout=2.0), relay, fs.api, Events())
    s.start()
    for url in (relay.url_for("st-1", "wrong-token"), relay.url_for("nope", s.token),
                relay.url_for("st-1", s.token[:-1])):
        with pytest.raises(InvalidStatus) as info:
            connect(url, subprotocols=["audio.drachtio.org"], timeout=3)
        assert info.value.response.status_code == 403
    assert relay.rejected == 3
    s.stop()


def test_fork_command_error_and_connect_failed(relay, app):
    fs = FakeSwitch([], start_reply="-ERR Operation Failed\n")
    events = Events()
    s = StreamSession(spec(app.url), relay, fs.api, events)
    with pytest.raises(StreamStartError):
        s.start()
    assert "module_failed" in events.names() and events.names()[-1] == "ended"
    app.wait_connection().wait_for(lambda c: c.closed.is_set())

    app2 = AppServer().start()
    try:
        fs2 = FakeSwitch([], connect=False)
        events2 = Events()
        s2 = StreamSession(spec(app2.url, stream_id="st-2"), relay, fs2.api, events2)
        s2.start()
        s2.on_module_event("mod_audio_fork::connect_failed", {"reason": "HS: ws upgrade response not 101"})
        assert s2.wait(5)
        assert ("module_failed", {"reason": "HS: ws upgrade response not 101"}) in events2.items
        assert events2.items[-1] == ("ended", {"reason": "module_failed"})
    finally:
        app2.stop()


def test_slow_app_degrades_without_stalling_another_stream(tmp_path, relay):
    _, msgs, _ = wav_messages(make_wav(tmp_path / "slow.wav", 8000, 6.0))
    slow_app = AppServer(read=False, rcvbuf=4096).start()
    fast_app = AppServer().start()
    try:
        slow_fs, fast_fs = FakeSwitch(msgs), FakeSwitch(msgs[:100])
        slow_events = Events()
        # a small send buffer: frames the kernel still takes are written inline, so the stall must
        # fill the socket before the bounded queue (and `degraded`) comes into play
        slow = StreamSession(spec(slow_app.url, stream_id="slow", app_queue_messages=20, send_timeout=30,
                                  app_sndbuf=8192), relay, slow_fs.api, slow_events)
        slow.start()
        fast = StreamSession(spec(fast_app.url, stream_id="fast"), relay, fast_fs.api, Events())
        fast.start()
        conn = fast_app.wait_connection()
        conn.wait_for(lambda c: len(media_of(c)) == 100)
        slow_fs.module.sent_all.wait(10)
        assert slow_fs.module.sent_all.is_set()
        wait_until(lambda: "degraded" in slow_events.names(), 10, "slow stream degraded")
        assert slow.app_dropped > 0
        fast.stop()
        slow.stop()
    finally:
        slow_app.stop()
        fast_app.stop()


def test_relay_survives_garbage_and_bad_upgrades(tmp_path, relay, app):
    import socket as _socket
    host, port = relay.address
    raw = _socket.create_connection((host, port), timeout=5)
    raw.sendall(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
    received = b""
    while True:  # whatever it answers, it must close the connection (recv times out otherwise)
        chunk = raw.recv(4096)
        if not chunk:
            break
        received += chunk
    assert b"101" not in received
    raw.close()
    with pytest.raises(InvalidStatus) as info:
        connect(f"ws://{host}:{port}/elsewhere?token=x", timeout=3)
    assert info.value.response.status_code == 403
    # a real stream still works, and garbage from the module mid-stream is ignored
    pcm, msgs, _ = wav_messages(make_wav(tmp_path / "g.wav", 8000, 0.2))
    fs = FakeSwitch(msgs[:5] + [b"\x01"] + msgs[5:])  # one odd 1-byte message shifts nothing away
    s = StreamSession(spec(app.url), relay, fs.api, Events())
    s.start()
    conn = app.wait_connection()
    conn.wait_for(lambda c: len(media_of(c)) == len(pcm) // 320)
    got = b"".join(base64.b64decode(m["media"]["payload"]) for m in media_of(conn))
    assert got == (pcm[:1600] + b"\x01" + pcm[1600:])[: len(got)]
    s.stop()


def test_app_messages_arriving_in_one_write_are_all_handled_in_order(relay, app):
    """The app reader reads whatever is there (not field by field): 30 playAudio messages, a ping
    and a checkpoint in one TCP write, then a message larger than one read, all reach the module."""
    s, fs, conn, events = _start_bidi(relay, app)
    pcm = _tone(8000, 0.6)
    chunks = [pcm[i:i + 320] for i in range(0, len(pcm), 320)]
    texts = [json.dumps({"event": "playAudio", "media": {"contentType": "audio/x-l16", "sampleRate": 8000,
                                                         "payload": base64.b64encode(c).decode()}})
             for c in chunks]
    conn.send(*[Frame(Opcode.TEXT, t.encode()) for t in texts[:15]], Frame(Opcode.PING, b"are you there"),
              *[Frame(Opcode.TEXT, t.encode()) for t in texts[15:]],
              Frame(Opcode.TEXT, b'{"event":"checkpoint","name":"cp"}'))
    big = _tone(8000, 1.0, freq=1000)  # 21 KB of JSON: several reads for one message
    conn.send_text(json.dumps({"event": "playAudio", "media": {"contentType": "audio/x-l16", "sampleRate": 8000,
                                                               "payload": base64.b64encode(big).decode()}}))
    conn.wait_for(lambda c: any(json.loads(t).get("name") == "cp" for t in c.texts()), timeout=5)
    fs.module.wait_for(lambda m: len(m.binary) >= 80, timeout=5)
    got = b"".join(f for _, f in fs.module.binary)
    assert got[: len(pcm)] == pcm                      # every small message, in order
    assert big[:3200] in got[len(pcm):]                # and the big one after them
    assert s.protocol_errors == 0
    s.stop()
