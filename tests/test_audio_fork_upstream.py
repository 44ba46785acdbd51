"""audio_fork.upstream.Upstream: what the app receives for what mod_audio_fork sends, per track,
encoding, rate and byte order, and the media clock each message is stamped with. The dialect is
the real Vobiz one; its messages are read back as JSON."""
import base64
import json

import numpy as np

from audio_fork import StreamSpec, codecs
from audio_fork.dialects import make_dialect
from audio_fork.upstream import Upstream


def upstream(**kw):
    spec = StreamSpec(stream_id="s", call_uuid="c", url="ws://app", **kw)
    dialect = make_dialect("vobiz", stream_id="s", call_id="c", account_id="", track=spec.track,
                           encoding=spec.encoding, sample_rate=spec.sample_rate)
    return Upstream(spec, dialect)


def media(texts):
    """(track, timestamp ms, payload) of each media message."""
    out = []
    for text in texts:
        msg = json.loads(text)
        m = msg["media"]
        out.append((m["track"], int(m["timestamp"]), base64.b64decode(m["payload"])))
    return out


def pcm(samples):
    return np.asarray(samples, dtype="<i2").tobytes()


def test_one_inbound_l16_track_is_passed_as_it_came_in_20_ms_frames_whatever_the_message_sizes():
    up = upstream()
    assert up.plain
    audio = pcm(np.arange(480) % 1000)            # 60 ms at 8 kHz, sent as 100 + 500 + 360 bytes
    got = media(up.feed(audio[:100]) + up.feed(audio[100:600]) + up.feed(audio[600:]))
    assert [(t, p) for t, _, p in got] == [("inbound", audio[i:i + 320]) for i in (0, 320, 640)]
    stamps = [ms for _, ms, _ in got]
    assert [b - a for a, b in zip(stamps, stamps[1:])] == [20, 20]
    assert up.frames == 3


def test_both_tracks_are_split_from_the_stereo_frame_and_each_has_its_own_clock():
    up = upstream(track="both")
    left, right = np.full(160, 111, "<i2"), np.full(160, -222, "<i2")
    frame = np.column_stack([left, right]).astype("<i2").tobytes()
    got = media(up.feed(frame + frame))
    assert [t for t, _, _ in got] == ["inbound", "outbound", "inbound", "outbound"]
    assert got[0][2] == left.tobytes() and got[1][2] == right.tobytes()
    assert got[2][1] - got[0][1] == 20 and got[3][1] - got[1][1] == 20


def test_the_outbound_track_alone_is_the_right_channel():
    up = upstream(track="outbound")
    frame = np.column_stack([np.full(160, 5, "<i2"), np.full(160, 7, "<i2")]).astype("<i2").tobytes()
    (track, _, payload), = media(up.feed(frame))
    assert track == "outbound" and payload == np.full(160, 7, "<i2").tobytes()


def test_mulaw_and_big_endian_l16():
    audio = pcm(np.linspace(-20000, 20000, 160).astype(int))
    (_, _, mu), = media(upstream(encoding="mulaw").feed(audio))
    assert len(mu) == 160 and mu == codecs.ulaw_encode(audio)
    (_, _, be), = media(upstream(l16_byte_order="be").feed(audio))
    assert np.array_equal(np.frombuffer(be, ">i2"), np.frombuffer(audio, "<i2"))


def test_24k_l16_is_resampled_from_the_forks_16k_into_20_ms_frames_of_960_bytes():
    up = upstream(sample_rate=24000)
    assert up.frames == 0 and not up.plain
    t = np.arange(16000) / 16000
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()   # 1 s at 16 kHz
    got = media(up.feed(tone))
    assert up.frames == 50
    assert all(len(p) == 960 for _, _, p in got)
    assert 47 <= len(got) <= 50       # the resampler holds back its filter's delay
    out = np.frombuffer(b"".join(p for _, _, p in got), "<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(out[2400:]))
    assert abs(np.argmax(spectrum) * 24000 / (len(out) - 2400) - 440) < 5
