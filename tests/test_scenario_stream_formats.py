"""Vobiz <Stream> on the simulator, one call per contentType and audioTrack, all on one stack at once:
what the app's WebSocket receives (start fields, sequence/chunk counters, timestamps, payloads
byte for byte against the caller's WAV or what the caller hears), the stereo split for `both`,
the close code, and the StartStream/StopStream callbacks (with X-VH-* from extraHeaders)."""
import audioop
import time

import numpy as np

from audio_fork_fakes import g711_ulaw_encode
from harness import Stack
from stream_scenarios import (Calls, assert_exact, media, messages, noise, payload_bytes, pcm, tone,
                              tone_power, tones, windows_with, write_wav)
from wsapp import AppServer as WsApp


def _check_counters(msgs, tracks, frame_bytes, encoding, rate, stream_id, uuid, t0):
    start = msgs[0]
    assert start["event"] == "start" and start["sequenceNumber"] == 0
    assert start["start"]["callId"] == uuid
    assert start["start"]["streamId"] == stream_id
    assert start["start"]["accountId"] == "MA_LOCAL"
    assert start["start"]["tracks"] == tracks
    assert start["start"]["mediaFormat"] == {"encoding": encoding, "sampleRate": rate}
    assert start["extra_headers"] == "{}"
    rest = msgs[1:]
    assert [m["sequenceNumber"] for m in rest] == list(range(1, len(rest) + 1))
    frames = media(rest)
    assert len(frames) == len(rest), {m["event"] for m in rest}
    assert [m["media"]["chunk"] for m in frames] == list(range(1, len(frames) + 1))
    for m in frames:
        assert m["streamId"] == stream_id and m["extra_headers"] == "{}"
        assert set(m["media"]) == {"track", "timestamp", "chunk", "payload"}
        assert isinstance(m["media"]["timestamp"], str) and isinstance(m["media"]["chunk"], int)
    for track in tracks:
        mine = media(rest, track)
        assert len(mine) > 40, (track, len(mine))
        stamps = [int(m["media"]["timestamp"]) for m in mine]
        assert all(b - a == 20 for a, b in zip(stamps, stamps[1:])), track
        assert abs(stamps[0] / 1000 - t0) < 5
        assert {len(payload_bytes([m])) for m in mine} == {frame_bytes}
    if len(tracks) == 2:   # stereo split: one inbound and one outbound message per 20 ms frame
        assert [m["media"]["track"] for m in frames[:20]] == ["inbound", "outbound"] * 10
    return frames


def test_vobiz_stream_content_types_and_tracks(tmp_path):
    caller_noise = noise(6.0, seed=7)
    caller_tones = tones([300, 1200], 6.0)
    played = tone(700, 2.0)
    apps = {name: WsApp().start() for name in ("l16_8k", "l16_16k", "mulaw", "outbound", "both", "both16k")}
    try:
        with Stack() as stack:
            calls = Calls(stack)
            tone_url = calls.serve_wav("/tone700.wav", played)
            status = calls.url("/stream-status")

            def stream(name, attrs):
                return (f'<Stream statusCallbackUrl="{status}" {attrs}>{apps[name].url}</Stream>')

            calls.add("2001", "<Response>" + stream("l16_8k", 'keepCallAlive="true" streamTimeout="2" '
                                                    'extraHeaders="tenant=acme,agent=7"') + "</Response>")
            calls.add("2002", "<Response>" + stream("l16_16k", 'keepCallAlive="true" streamTimeout="2" '
                                                    'contentType="audio/x-l16;rate=16000"') + "</Response>")
            calls.add("2003", "<Response>" + stream("mulaw", 'keepCallAlive="true" streamTimeout="2" '
                                                    'contentType="audio/x-mulaw;rate=8000"') + "</Response>")
            calls.add("2004", "<Response>" + stream("outbound", 'audioTrack="outbound"')
                      + f"<Play>{tone_url}</Play></Response>")
            calls.add("2005", "<Response>" + stream("both", 'audioTrack="both"')
                      + f"<Play>{tone_url}</Play></Response>")
            calls.add("2006", "<Response>" + stream("both16k", 'audioTrack="both" '
                                                    'contentType="audio/x-l16;rate=16000"')
                      + f"<Play>{tone_url}</Play></Response>")
            noise_wav = write_wav(tmp_path / "noise.wav", caller_noise)
            tones_wav = write_wav(tmp_path / "tones.wav", caller_tones)
            t0 = time.time()
            sims = {to: stack.call(to=to, audio=(tones_wav if to in ("2002", "2006") else noise_wav),
                                   hangup_after=12, keep_heard=True)
                    for to in ("2001", "2002", "2003", "2004", "2005", "2006")}
            summaries = {to: c.wait(20) for to, c in sims.items()}
            for app in apps.values():
                app.wait_connection(1).closed.wait(5)
            hooks = {to: calls.webhooks(c.uuid) for to, c in sims.items()}
            for to, c in sims.items():
                stack.app.wait_for(lambda: any(h.get("Event") == "StartStream" for h in calls.webhooks(c.uuid)), 5)
                hooks[to] = calls.webhooks(c.uuid)
            stack.wait(lambda: len(calls.webhooks(sims["2001"].uuid, "StopStream")) == 1, 5)
            hooks["2001"] = calls.webhooks(sims["2001"].uuid)
    finally:
        for app in apps.values():
            app.stop()

    for to, summary in summaries.items():
        assert summary["answered"] and summary["hangup_cause"] == "NORMAL_CLEARING", (to, summary)
    # keepCallAlive: the document waited for the stream (streamTimeout=2), then ended
    assert 2.0 <= summaries["2001"]["duration_s"] < 5.0

    def stream_id(to):
        starts = [h for h in hooks[to] if h.get("Event") == "StartStream"]
        assert len(starts) == 1, (to, hooks[to])
        return starts[0]["StreamID"]

    # -- L16 8 kHz, inbound: byte for byte the caller's audio; StartStream/StopStream with X-VH-* --
    conn = apps["l16_8k"].connections[0]
    msgs = messages(conn)
    frames = _check_counters(msgs, ["inbound"], 320, "audio/x-l16", 8000, stream_id("2001"),
                             sims["2001"].uuid, t0)
    n = assert_exact(pcm(payload_bytes(frames)), caller_noise, what="l16 8k inbound")
    assert n >= 8000 * 1.5                        # ~2 s of stream (streamTimeout)
    assert conn.close_code == 1000
    start_cb, stop_cb = (next(h for h in hooks["2001"] if h.get("Event") == e) for e in ("StartStream", "StopStream"))
    for cb in (start_cb, stop_cb):
        assert cb["CallUUID"] == sims["2001"].uuid == msgs[0]["start"]["callId"]
        assert cb["StreamID"] == msgs[0]["start"]["streamId"]
        assert cb["X-VH-tenant"] == "acme" and cb["X-VH-agent"] == "7"
        assert cb["Error"] == "" and cb["ParentAuthID"] == "MA_LOCAL"
        assert cb["From"] == "15551230001" and cb["To"] == "2001"
        assert cb["status_callback_url"].endswith("/stream-status") and cb["status_callback_method"] == "POST"
        assert cb["extraHeaders"] == "tenant=acme,agent=7" and cb["streamTimeout"] == "2"
        assert cb["contentType"] == "audio/x-l16;rate=8000" and cb["audioTrack"] == "inbound"
        assert len(cb["Timestamp"]) == 19
    assert start_cb["ServiceURL"] == apps["l16_8k"].url
    assert not [h for h in hooks["2001"] if h.get("Event") in ("DroppedStream", "DegradedStream")]

    # -- L16 16 kHz: resampled, so compared by content --
    msgs = messages(apps["l16_16k"].connections[0])
    frames = _check_counters(msgs, ["inbound"], 640, "audio/x-l16", 16000, stream_id("2002"),
                             sims["2002"].uuid, t0)
    got = pcm(payload_bytes(frames))
    assert tone_power(got, 300, 16000) + tone_power(got, 1200, 16000) > 0.9
    assert 0.8 < np.sqrt(np.mean(got.astype(float) ** 2)) / np.sqrt(np.mean(caller_tones.astype(float) ** 2)) < 1.2
    spectrum = np.abs(np.fft.rfft(got.astype(float))) ** 2
    freqs = np.fft.rfftfreq(len(got), 1 / 16000)
    assert spectrum[freqs > 4000].sum() / spectrum.sum() < 0.01     # no imaging above the 8 kHz band

    # -- mu-law 8 kHz: G.711 of the caller's audio (decoded with audioop, an independent codec) --
    msgs = messages(apps["mulaw"].connections[0])
    frames = _check_counters(msgs, ["inbound"], 160, "audio/x-mulaw", 8000, stream_id("2003"),
                             sims["2003"].uuid, t0)
    ulaw = payload_bytes(frames)
    decoded = pcm(audioop.ulaw2lin(ulaw, 2)).astype(int)
    decoded = decoded[:np.flatnonzero(decoded)[-1] + 1]
    src = caller_noise.astype(int)
    off = min(range(0, len(src) - 160, 160), key=lambda o: np.abs(src[o:o + 160] - decoded[:160]).max())
    ref = src[off:off + len(decoded)]
    assert len(ref) == len(decoded) >= 8000 * 1.5
    # within one G.711 quantisation step of the caller's samples, everywhere
    assert np.all(np.abs(decoded - ref) <= np.abs(ref) / 16 + 16)
    # and byte for byte the codes of the ITU-T G.191 reference encoder (what FreeSWITCH's g711.h does)
    reference = bytes(g711_ulaw_encode(int(v)) for v in caller_noise[off:off + len(decoded)])
    assert ulaw[:len(decoded)] == reference

    # -- outbound track: exactly what the caller hears (the <Play>), never the caller --
    msgs = messages(apps["outbound"].connections[0])
    frames = _check_counters(msgs, ["outbound"], 320, "audio/x-l16", 8000, stream_id("2004"),
                             sims["2004"].uuid, t0)
    out = pcm(payload_bytes(frames))
    assert assert_exact(out, played, what="outbound track") == len(played)
    assert windows_with(sims["2004"].heard(), 700) >= 15

    # -- both: stereo split, left = caller (inbound), right = what the caller hears (outbound) --
    msgs = messages(apps["both"].connections[0])
    frames = _check_counters(msgs, ["inbound", "outbound"], 320, "audio/x-l16", 8000, stream_id("2005"),
                             sims["2005"].uuid, t0)
    assert_exact(pcm(payload_bytes(media(frames, "inbound"))), caller_noise, what="both: inbound")
    assert assert_exact(pcm(payload_bytes(media(frames, "outbound"))), played, what="both: outbound") == len(played)
    ins, outs = media(frames, "inbound"), media(frames, "outbound")
    assert [m["media"]["timestamp"] for m in ins] == [m["media"]["timestamp"] for m in outs][:len(ins)]

    msgs = messages(apps["both16k"].connections[0])
    frames = _check_counters(msgs, ["inbound", "outbound"], 640, "audio/x-l16", 16000, stream_id("2006"),
                             sims["2006"].uuid, t0)
    inbound = pcm(payload_bytes(media(frames, "inbound")))
    outbound = pcm(payload_bytes(media(frames, "outbound")))
    assert tone_power(inbound, 300, 16000) + tone_power(inbound, 1200, 16000) > 0.9
    assert tone_power(inbound, 700, 16000) < 0.01
    assert windows_with(outbound, 700, rate=16000) >= 15 and tone_power(outbound, 300, 16000) < 0.01

    # the document ended (hangup): sockets closed with 1000, no StopStream for those
    for name, to in (("outbound", "2004"), ("both", "2005"), ("both16k", "2006")):
        assert apps[name].connections[0].close_code == 1000, name
        assert not [h for h in hooks[to] if h.get("Event") == "StopStream"], to
