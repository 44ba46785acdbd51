"""SWML documents on the simulator through the same interpreter: answer, record_call /
stop_record_call, stream / stop_stream (Twilio/SignalWire wire format: connected, start with
streamSid/callSid/accountSid/tracks/customParameters/mediaFormat, media, stop; the bearer token on
the handshake; calling.call.stream and calling.call.record status callbacks), play (say:, files,
silence:), sleep, hangup reasons, connect to stream:ws:// (bidirectional and blocking: media back to
the caller, marks echoed after playout or at once, clear returns pending marks), ring: refused."""
import json
import time
from pathlib import Path

import audioop
import gevent
import numpy as np
import soundfile
import yaml

from harness import Stack
from stream_scenarios import (Calls, b64, media, messages, noise, payload_bytes, pcm, tone, wait_until,
                              windows_with, write_wav)
from wsapp import AppServer as WsApp


def _doc(*steps):
    return json.dumps({"version": "1.0.0", "sections": {"main": list(steps)}})


def _ulaw_pcm(msgs):
    return pcm(audioop.ulaw2lin(payload_bytes(msgs), 2))


def _marks(conn):
    return [json.loads(m)["mark"]["name"] for m in conn.texts() if json.loads(m).get("event") == "mark"]


def _connect_app(conn, sim, log):
    """Twilio-style bidirectional app: mark when idle, media + marks, clear, then close."""
    conn.wait_for(lambda c: len(c.texts()) >= 2)
    sid = json.loads(conn.texts()[1])["streamSid"]

    def send(obj):
        conn.send_text(json.dumps(obj))

    t = time.monotonic()
    send({"event": "mark", "streamSid": sid, "mark": {"name": "idle"}})
    conn.wait_for(lambda c: "idle" in _marks(c), 3)
    log["idle_s"] = time.monotonic() - t
    audio = tone(1000, 1.0, rate=16000)
    for part in np.array_split(audio, 4):                  # faster than real time, in pieces
        send({"event": "media", "streamSid": sid, "media": {"payload": b64(part)}})
    send({"event": "mark", "streamSid": sid, "mark": {"name": "m1"}})
    t_m1 = time.monotonic()
    send({"event": "media", "media": {"payload": b64(tone(1300, 2.0, rate=16000))}})   # no streamSid (Telnyx style)
    send({"event": "mark", "streamSid": sid, "mark": {"name": "m2"}})
    conn.wait_for(lambda c: "m1" in _marks(c), 4)
    log["m1_s"] = time.monotonic() - t_m1
    wait_until(lambda: windows_with(sim.heard(), 1300) >= 2, 4, "1300 Hz heard")
    t_clear = time.monotonic()
    send({"event": "clear", "streamSid": sid})
    conn.wait_for(lambda c: "m2" in _marks(c), 2)          # a clear returns the pending marks
    log["m2_after_clear_s"] = time.monotonic() - t_clear
    conn.close(1000)                                       # the app ends the connect
    conn.closed.wait(5)


def test_swml_document_with_streams_recording_and_play(tmp_path):
    apps = {"one": WsApp().start(), "two": WsApp().start(), "agent": WsApp().start(),
            "refuse": WsApp(reject_status=403).start()}
    caller_noise = noise(12.0, seed=5)
    caller = write_wav(tmp_path / "noise.wav", caller_noise)
    log = {}
    try:
        with Stack() as stack:
            calls = Calls(stack)
            tone_url = calls.serve_wav("/tone700.wav", tone(700, 1.0))
            status = calls.url("/swml-status")
            calls.add("6001", _doc(
                {"answer": {}},
                {"record_call": {"control_id": "rec1", "stereo": True, "format": "wav", "status_url": status}},
                {"stream": {"url": apps["one"].url, "control_id": "s1", "name": "live", "track": "both_tracks",
                            "codec": "PCMU", "status_url": status, "authorization_bearer_token": "secret-token",
                            "custom_parameters": {"customer_tier": "gold", "n": 7}}},
                {"stream": {"url": apps["two"].url, "control_id": "s2", "codec": "L16", "track": "outbound_track",
                            "status_url": status}},
                {"play": {"url": "say:Hello, thanks for calling."}},
                {"play": {"urls": [tone_url, "silence: 0.5"]}},
                {"stop_stream": {}},
                {"stop_stream": {"control_id": "s1"}},
                {"stop_record_call": {}},
                {"sleep": 1500},
                {"hangup": {}}), "application/json")
            calls.add("6002", yaml.safe_dump({"sections": {"main": [
                {"connect": {"to": f"stream:{apps['agent'].url}", "codec": "L16@16000h", "name": "agent",
                             "status_url": status, "custom_parameters": {"lang": "en"}}},
                {"hangup": {"reason": "busy"}}]}}), "application/yaml")
            calls.add("6003", _doc({"hangup": {"reason": "decline"}}), "application/json")
            calls.add("6004", _doc({"answer": {}}, {"play": {"urls": ["silence: 0.2", "ring:us"]}}), "application/json")
            calls.add("6005", _doc({"stream": {"url": apps["refuse"].url, "status_url": status}},
                                   {"play": {"url": "silence: 0.2"}}, {"sleep": {"duration": 1500}}), "application/json")
            sims = {to: stack.call(to=to, audio=caller, hangup_after=20, keep_heard=True)
                    for to in ("6001", "6002", "6003", "6004", "6005")}
            agent = gevent.spawn(_connect_app, apps["agent"].wait_connection(5), sims["6002"], log)

            # the variables the methods set stay on the call context
            contexts = {to: wait_until(lambda: stack.service.calls.get(sims[to].uuid), 5, f"{to} live")
                        for to in ("6001", "6005")}
            agent.get(timeout=20)
            summaries = {to: c.wait(20) for to, c in sims.items()}
            hangups = {}
            for to, c in sims.items():
                stack.app.wait_for(lambda: any(r.path == "/hangup" and r.form.get("CallUUID") == c.uuid
                                               for r in stack.app.requests), 10)
                hangups[to] = next(r.form for r in stack.app.requests
                                   if r.path == "/hangup" and r.form.get("CallUUID") == c.uuid)
            calls.wait_webhook(sims["6002"].uuid, "finished", 5)
            calls.wait_webhook(sims["6001"].uuid, "finished", 5, count=3)     # s2, s1, rec1
            seen_vars = {to: dict(ctx.vars) for to, ctx in contexts.items()}
            hooks = {to: calls.webhooks(c.uuid) for to, c in sims.items()}
            record_file = Path(stack.data_dir) / "recordings"
            recordings = sorted(record_file.glob("*.wav"))
            rec_cb = next(h for h in hooks["6001"] if h.get("event_type") == "calling.call.record")
            rec_path = record_file / Path(rec_cb["params"]["record"]["url"]).name
            rec_data, rec_rate = soundfile.read(str(rec_path), dtype="int16", always_2d=True)
    finally:
        for app in apps.values():
            app.stop()

    uuid1 = sims["6001"].uuid
    # -- 6001: two streams, a recording, plays, stop_stream / stop_record_call, sleep, hangup --
    assert summaries["6001"]["answered"] and summaries["6001"]["hangup_cause"] == "NORMAL_CLEARING"
    assert hangups["6001"]["HangupCauseCode"] == "4000"
    one = apps["one"].connections[0]
    assert one.header("Authorization") == "Bearer secret-token"
    assert apps["two"].connections[0].header("Authorization") is None
    msgs = messages(one)
    assert msgs[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    start = msgs[1]
    assert start["event"] == "start" and start["sequenceNumber"] == "1"
    sid = start["streamSid"]
    assert start["start"] == {"streamSid": sid, "accountSid": "MA_LOCAL", "callSid": uuid1,
                              "tracks": ["inbound", "outbound"],
                              "customParameters": {"customer_tier": "gold", "n": "7"},
                              "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
    assert [int(m["sequenceNumber"]) for m in msgs[1:]] == list(range(1, len(msgs)))
    for track in ("inbound", "outbound"):
        mine = media(msgs, track)
        assert [m["media"]["chunk"] for m in mine] == [str(i) for i in range(1, len(mine) + 1)]
        assert [m["media"]["timestamp"] for m in mine] == [str(20 * i) for i in range(len(mine))]
        assert all(m["streamSid"] == sid and len(payload_bytes([m])) == 160 for m in mine)
    inbound = _ulaw_pcm(media(msgs, "inbound")).astype(int)
    off = min(range(0, len(caller_noise) - 160, 160),
              key=lambda o: np.abs(caller_noise[o:o + 160].astype(int) - inbound[:160]).max())
    ref = caller_noise[off:off + len(inbound)].astype(int)
    assert np.all(np.abs(inbound[:len(ref)] - ref) <= np.abs(ref) / 16 + 16)    # the caller, via mu-law
    outbound = _ulaw_pcm(media(msgs, "outbound"))
    assert windows_with(outbound, 700) >= 8                                     # the played file
    assert np.sqrt(np.mean(outbound[:8000].astype(float) ** 2)) > 500            # the say: speech first
    assert msgs[-1] == {"event": "stop", "sequenceNumber": str(len(msgs) - 1),
                        "stop": {"accountSid": "MA_LOCAL", "callSid": uuid1}, "streamSid": sid}
    assert one.close_code == 1000
    two = messages(apps["two"].connections[0])
    assert two[1]["start"]["mediaFormat"] == {"encoding": "audio/x-L16", "sampleRate": 16000, "channels": 1}
    assert two[1]["start"]["tracks"] == ["outbound"] and two[1]["start"]["customParameters"] == {}
    assert {len(payload_bytes([m])) for m in media(two)} == {640} and two[-1]["event"] == "stop"
    heard_by_two = pcm(payload_bytes(media(two, "outbound")))         # what the caller hears, at 16 kHz
    assert windows_with(heard_by_two, 700, rate=16000) >= 8 and len(media(two)) == len(media(two, "outbound"))
    stream_cbs = [(h["params"]["control_id"], h["params"]["state"]) for h in hooks["6001"]
                  if h.get("event_type") == "calling.call.stream"]
    assert sorted(stream_cbs[:2]) == [("s1", "streaming"), ("s2", "streaming")]
    assert stream_cbs[2:] == [("s2", "finished"), ("s1", "finished")]     # stop_stream {} = the last one
    s1_cb = next(h for h in hooks["6001"] if h.get("event_type") == "calling.call.stream")
    if s1_cb["params"]["control_id"] != "s1":
        s1_cb = [h for h in hooks["6001"] if h.get("event_type") == "calling.call.stream"][1]
    assert s1_cb["event_channel"] == f"swml:{uuid1}" and isinstance(s1_cb["timestamp"], float)
    assert s1_cb["params"]["name"] == "live" and s1_cb["params"]["url"] == apps["one"].url
    assert s1_cb["params"]["call_id"] == uuid1 and s1_cb["params"]["segment_id"]
    assert rec_cb["params"]["control_id"] == "rec1" and rec_cb["params"]["state"] == "finished"
    assert rec_cb["params"]["record"]["format"] == "wav" and rec_cb["params"]["record"]["duration"] > 2
    assert rec_cb["params"]["record"]["size"] > 10000
    assert rec_rate == 8000 and rec_data.shape[1] == 2                          # stereo
    assert windows_with(rec_data[:, 1], 700) >= 8 and windows_with(rec_data[:, 0], 700) == 0
    assert np.sqrt(np.mean(rec_data[:, 0].astype(float) ** 2)) > 1500           # the caller's noise, left
    assert seen_vars["6001"]["stream_result"] == "success"
    assert seen_vars["6001"]["stream_control_id"] == "s2"
    assert seen_vars["6001"]["stop_stream_result"] == "success"
    assert seen_vars["6001"]["record_control_id"] == "rec1"
    assert seen_vars["6001"]["record_call_url"] == rec_cb["params"]["record"]["url"]
    assert seen_vars["6001"]["record_call_result"] == "success"
    assert seen_vars["6001"]["stop_record_call_result"] == "success"
    assert len(recordings) == 1

    # -- 6002: connect to stream:ws:// (bidirectional, blocking), then hangup busy --
    conn = apps["agent"].connections[0]
    msgs = messages(conn)
    assert msgs[1]["start"]["mediaFormat"] == {"encoding": "audio/x-L16", "sampleRate": 16000, "channels": 1}
    assert msgs[1]["start"]["customParameters"] == {"lang": "en"} and msgs[1]["start"]["tracks"] == ["inbound"]
    assert _marks(conn) == ["idle", "m1", "m2"]
    assert log["idle_s"] < 0.5 and log["m1_s"] >= 0.8 and log["m2_after_clear_s"] < 0.5
    heard = sims["6002"].heard()
    assert windows_with(heard, 1000) >= 7
    assert 2 <= windows_with(heard, 1300) <= 10                 # 2 s queued, cut short by clear
    assert summaries["6002"]["answered"] and summaries["6002"]["hangup_cause"] == "USER_BUSY"
    assert hangups["6002"]["HangupCause"] == "USER_BUSY"
    states = [h["params"]["state"] for h in hooks["6002"] if h.get("event_type") == "calling.call.stream"]
    assert states == ["streaming", "finished"]
    assert all(h["params"]["name"] == "agent" for h in hooks["6002"] if h.get("event_type"))

    # -- 6003: hangup decline before answering: rejected --
    assert not summaries["6003"]["answered"] and summaries["6003"]["hangup_cause"] == "CALL_REJECTED"
    # -- 6004: play ring: is refused with a clear error --
    assert summaries["6004"]["answered"]
    assert "ring:us is not supported" in hangups["6004"].get("Error", ""), hangups["6004"]
    # -- 6005: a refused stream: stream_result failed, the document goes on --
    assert seen_vars["6005"]["stream_result"] == "failed"
    assert summaries["6005"]["answered"] and hangups["6005"]["HangupCauseCode"] == "4010"
