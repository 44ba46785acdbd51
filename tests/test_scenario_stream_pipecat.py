"""pipecat acceptance: pipecat's real serializers (in their own venv, driven through
tests/pipecat_driver.py) accept what our relay sends — provider detection on the first two frames
(parse_telephony_websocket; pipecat-vobiz's parse_vobiz_start), `media` → InputAudioRawFrame with
the caller's audio, `dtmf` → InputDTMFFrame — and what they emit (Vobiz playAudio / clearAudio /
stop; Twilio media / clear) is accepted by our relay and reaches the caller."""
import audioop
import base64
import json

import gevent
import numpy as np

from harness import Stack
from pipecat_support import Driver, needs_pipecat
from stream_scenarios import Calls, assert_exact, messages, noise, pcm, tone, wait_until, windows_with, write_wav
from wsapp import AppServer as WsApp

pytestmark = needs_pipecat


def _vobiz_bot(conn, sim, driver, encoding, rate, order, result, pipeline_rate=16000):
    """A pipecat-vobiz bot: detect, reply with 1 s of 1000 Hz, interrupt a 2 s reply, then EndFrame."""
    conn.wait_for(lambda c: len(c.texts()) >= 2)
    first_two = conn.texts()[:2]
    result["detect"] = driver(op="detect", frames=first_two)
    vs = result["detect"]["vobiz_start"]
    driver(op="open", provider="vobiz", stream_id=vs["stream_id"], call_id=vs["call_id"],
           encoding=vs["encoding"], sample_rate=vs["sample_rate"], l16_byte_order=order,
           pipeline_rate=pipeline_rate)
    for text in driver(op="serialize", audio=base64.b64encode(tone(1000, 1.0, rate=16000).tobytes()).decode(),
                       sample_rate=16000)["messages"]:
        conn.send_text(text)
    result["sent"] = json.loads(text)
    conn.send_text(json.dumps({"event": "checkpoint", "streamId": vs["stream_id"], "name": "reply"}))
    conn.wait_for(lambda c: any(json.loads(m).get("name") == "reply" for m in c.texts()), 5)
    for text in driver(op="serialize", audio=base64.b64encode(tone(1300, 2.0, rate=16000).tobytes()).decode(),
                       sample_rate=16000)["messages"]:
        conn.send_text(text)
    wait_until(lambda: windows_with(sim.heard(), 1300) >= 2, 5, "1300 Hz heard")
    (clear,) = driver(op="interrupt")["messages"]
    result["clear"] = json.loads(clear)
    conn.send_text(clear)
    conn.wait_for(lambda c: any(json.loads(m).get("event") == "clearedAudio" for m in c.texts()), 3)
    conn.wait_for(lambda c: any(json.loads(m).get("event") == "dtmf" for m in c.texts()), 5)
    (stop,) = driver(op="end")["messages"]
    result["stop"] = json.loads(stop)
    conn.send_text(stop)
    conn.closed.wait(5)
    result["parsed"] = driver(op="deserialize", messages=conn.texts())


def _twilio_bot(conn, sim, driver, result):
    """A pipecat Twilio bot on a SWML connect: detect, media back, mark, clear, hang up by closing."""
    conn.wait_for(lambda c: len(c.texts()) >= 2)
    result["detect"] = driver(op="detect", frames=conn.texts()[:2])
    cd = result["detect"]["call_data"]
    driver(op="open", provider="twilio", stream_id=cd["stream_id"], call_id=cd["call_id"], pipeline_rate=16000)
    for text in driver(op="serialize", audio=base64.b64encode(tone(1000, 1.0, rate=16000).tobytes()).decode(),
                       sample_rate=16000)["messages"]:
        conn.send_text(text)
    result["sent"] = json.loads(text)
    conn.send_text(json.dumps({"event": "mark", "streamSid": cd["stream_id"], "mark": {"name": "reply"}}))
    conn.wait_for(lambda c: any(json.loads(m).get("event") == "mark" for m in c.texts()), 5)
    for text in driver(op="serialize", audio=base64.b64encode(tone(1300, 2.0, rate=16000).tobytes()).decode(),
                       sample_rate=16000)["messages"]:
        conn.send_text(text)
    wait_until(lambda: windows_with(sim.heard(), 1300) >= 2, 5, "1300 Hz heard")
    (clear,) = driver(op="interrupt")["messages"]
    result["clear"] = json.loads(clear)
    conn.send_text(clear)
    conn.wait_for(lambda c: any(json.loads(m).get("event") == "dtmf" for m in c.texts()), 5)
    result["parsed"] = driver(op="deserialize", messages=conn.texts())
    conn.close(1000)
    conn.closed.wait(5)


def test_pipecat_serializers_accept_our_streams(tmp_path):
    caller_noise = noise(10.0, seed=11)
    caller = write_wav(tmp_path / "noise.wav", caller_noise)
    apps = {n: WsApp().start() for n in ("mulaw", "l16", "twilio", "oneway")}
    drivers = {n: Driver() for n in apps}
    results = {n: {} for n in apps}
    try:
        with Stack() as stack:
            calls = Calls(stack)
            bidi = 'bidirectional="true" keepCallAlive="true"'
            calls.add("7001", f'<Response><Stream {bidi} contentType="audio/x-mulaw;rate=8000">'
                              f'{apps["mulaw"].url}</Stream></Response>')
            calls.add("7002", f'<Response><Stream {bidi} contentType="audio/x-l16;rate=16000">'
                              f'{apps["l16"].url}</Stream></Response>')
            calls.add("7003", json.dumps({"sections": {"main": [
                {"stream": {"url": apps["oneway"].url, "custom_parameters": {"from_number": "15551230001"}}},
                {"connect": {"to": f"stream:{apps['twilio'].url}"}},
                {"hangup": {}}]}}), "application/json")
            sims = {to: stack.call(to=to, audio=caller, hangup_after=20, keep_heard=True,
                                   dtmf=[("7", 1.5)]) for to in ("7001", "7002", "7003")}
            bots = [gevent.spawn(_vobiz_bot, apps["mulaw"].wait_connection(5), sims["7001"], drivers["mulaw"],
                                 "audio/x-mulaw", 8000, "be", results["mulaw"]),
                    gevent.spawn(_vobiz_bot, apps["l16"].wait_connection(5), sims["7002"], drivers["l16"],
                                 "audio/x-l16", 16000, "le", results["l16"]),
                    gevent.spawn(_twilio_bot, apps["twilio"].wait_connection(5), sims["7003"], drivers["twilio"],
                                 results["twilio"])]
            gevent.joinall(bots, timeout=30, raise_error=True)
            summaries = {to: c.wait(15) for to, c in sims.items()}
            oneway = apps["oneway"].connections[0]
            oneway.closed.wait(5)
            results["oneway"]["detect"] = drivers["oneway"](op="detect", frames=oneway.texts()[:2])
            cd = results["oneway"]["detect"]["call_data"]
            drivers["oneway"](op="open", provider="twilio", stream_id=cd["stream_id"], call_id=cd["call_id"],
                              pipeline_rate=8000)
            results["oneway"]["parsed"] = drivers["oneway"](op="deserialize", messages=oneway.texts())
    finally:
        for d in drivers.values():
            d.close()
        for app in apps.values():
            app.stop()

    for to, s in summaries.items():
        assert s["answered"] and s["hangup_cause"] == "NORMAL_CLEARING", (to, s)

    # -- Vobiz streams (pipecat-vobiz) --
    for name, to, encoding, rate in (("mulaw", "7001", "audio/x-mulaw", 8000), ("l16", "7002", "audio/x-l16", 16000)):
        r = results[name]
        start = json.loads(apps[name].connections[0].texts()[0])["start"]
        assert r["detect"]["transport"] == "plivo"           # Vobiz is Plivo-shaped for pipecat's runner
        assert r["detect"]["call_data"]["stream_id"] == start["streamId"]
        assert r["detect"]["call_data"]["call_id"] == sims[to].uuid
        assert r["detect"]["vobiz_start"] == {"stream_id": start["streamId"], "call_id": sims[to].uuid,
                                              "encoding": encoding, "sample_rate": rate}
        assert r["sent"]["event"] == "playAudio" and r["sent"]["media"]["contentType"] == encoding
        assert r["clear"] == {"event": "clearAudio", "streamId": start["streamId"]}
        assert r["stop"] == {"event": "stop", "streamId": start["streamId"]}
        heard = sims[to].heard()
        assert windows_with(heard, 1000) >= 7, name
        assert 2 <= windows_with(heard, 1300) <= 10, name    # cut short by pipecat's clearAudio
        parsed = r["parsed"]
        assert parsed["dtmf"] == ["7"], name
        got = pcm(base64.b64decode(parsed["audio"]))           # at the pipeline rate, 16 kHz
        assert parsed["sample_rate"] == 16000
        sent_frames = len([m for m in messages(apps[name].connections[0]) if m.get("event") == "media"])
        assert sent_frames >= 50 and len(got) >= 0.8 * sent_frames * 320, (name, len(got), sent_frames)
        if name == "l16":   # 16 kHz L16 (little-endian, as configured): pipecat passes it through
            ours = b"".join(base64.b64decode(m["media"]["payload"]) for m in messages(apps[name].connections[0])
                            if m.get("event") == "media")
            assert got.tobytes() == ours[:len(got.tobytes())]
        else:               # mu-law 8 kHz, decoded and resampled to 16 kHz by pipecat: the caller's audio
            down, src = got[::2].astype(float), caller_noise.astype(float)
            best = max(np.corrcoef(down[:4000], src[o:o + 4000])[0, 1] for o in range(0, len(src) - 4000, 160))
            assert best > 0.8, (name, best)

    # -- SWML connect (pipecat TwilioFrameSerializer) --
    r = results["twilio"]
    start = json.loads(apps["twilio"].connections[0].texts()[1])
    assert r["detect"]["transport"] == "twilio"
    assert r["detect"]["call_data"]["stream_id"] == start["streamSid"]
    assert r["detect"]["call_data"]["call_id"] == sims["7003"].uuid
    assert r["sent"]["event"] == "media" and r["clear"] == {"event": "clear", "streamSid": start["streamSid"]}
    heard = sims["7003"].heard()
    assert windows_with(heard, 1000) >= 7 and 2 <= windows_with(heard, 1300) <= 10
    assert r["parsed"]["dtmf"] == ["7"]
    got = pcm(base64.b64decode(r["parsed"]["audio"]))
    sent_frames = len([m for m in messages(apps["twilio"].connections[0]) if m.get("event") == "media"])
    assert sent_frames >= 50 and len(got) >= 0.8 * sent_frames * 320

    # -- SWML one-way stream: detected, media parsed to the caller's audio (mu-law decoded) --
    r = results["oneway"]
    assert r["detect"]["transport"] == "twilio"
    assert r["detect"]["call_data"]["body"] == {"from_number": "15551230001"}
    assert r["detect"]["call_data"]["from_number"] == "15551230001"
    got = pcm(base64.b64decode(r["parsed"]["audio"])).astype(int)
    ours = pcm(audioop.ulaw2lin(b"".join(base64.b64decode(m["media"]["payload"])
                                         for m in messages(apps["oneway"].connections[0])
                                         if m.get("event") == "media"), 2)).astype(int)
    assert r["parsed"]["sample_rate"] == 8000 and np.array_equal(got, ours)
    assert r["parsed"]["dtmf"] == ["7"]     # callfork sends dtmf on every stream (SignalWire lists it for all)


def test_pipecat_vobiz_default_big_endian_l16(tmp_path):
    """pipecat-vobiz's default L16 byte order is big-endian: with `l16_byte_order = "be"` callfork
    sends and accepts big-endian L16, and the serializer's defaults work unchanged."""
    caller_noise = noise(8.0, seed=13)
    app = WsApp().start()
    driver = Driver()
    result = {}
    try:
        with Stack(env={"CALLFORK_AUDIO_FORK_L16_BYTE_ORDER": "be"}) as stack:
            calls = Calls(stack)
            calls.add("7101", f'<Response><Stream bidirectional="true" keepCallAlive="true">{app.url}</Stream>'
                              f'</Response>')
            sim = stack.call(to="7101", audio=write_wav(tmp_path / "n.wav", caller_noise), hangup_after=20,
                             keep_heard=True, dtmf=[("7", 1.5)])
            bot = gevent.spawn(_vobiz_bot, app.wait_connection(5), sim, driver, "audio/x-l16", 8000, "be",
                               result, 8000)
            bot.get(timeout=30)
            summary = sim.wait(15)
    finally:
        driver.close()
        app.stop()
    assert summary["answered"]
    parsed = result["parsed"]
    assert parsed["sample_rate"] == 8000 and parsed["dtmf"] == ["7"]
    # pipecat's big-endian decode of our frames is the caller's audio, sample for sample
    assert assert_exact(pcm(base64.b64decode(parsed["audio"])), caller_noise, what="pipecat BE") > 8000
    heard = sim.heard()
    assert windows_with(heard, 1000) >= 7 and 2 <= windows_with(heard, 1300) <= 10
