"""audio_fork.codecs: µ-law against G.711 computed here from the standard's segment rules,
byte order against struct, resampling by measured frequency, stereo split and mix."""
import math
import struct

import numpy as np
import pytest

from audio_fork import codecs

from audio_fork_fakes import SEG_END as _SEG_END, g711_ulaw_decode, g711_ulaw_encode


def test_ulaw_decode_all_256_codes():
    got = np.frombuffer(codecs.ulaw_decode(bytes(range(256))), dtype="<i2")
    assert [int(v) for v in got] == [g711_ulaw_decode(u) for u in range(256)]
    # anchor values of the standard
    assert g711_ulaw_decode(0xFF) == 0 and g711_ulaw_decode(0x80) == 32124 and g711_ulaw_decode(0x00) == -32124


def test_ulaw_encode_every_int16_value():
    values = np.arange(-32768, 32768, dtype=np.int16)
    got = codecs.ulaw_encode(values.astype("<i2").tobytes())
    expected = bytes(g711_ulaw_encode(int(v)) for v in values)
    assert got == expected
    assert codecs.ulaw_encode(struct.pack("<h", 0)) == b"\xff"
    assert codecs.ulaw_encode(struct.pack("<h", -1)) == b"\x7f"


def test_ulaw_round_trips():
    codes = bytes(range(256))
    back = codecs.ulaw_encode(codecs.ulaw_decode(codes))
    # every code survives except negative zero (0x7F), which decodes to 0 and re-encodes as 0xFF
    assert [i for i in range(256) if back[i] != codes[i]] == [0x7F]
    # linear -> µ-law -> linear stays within half a quantisation step of the segment
    x = np.linspace(-30000, 30000, 4001).astype(np.int16)
    y = np.frombuffer(codecs.ulaw_decode(codecs.ulaw_encode(x.tobytes())), dtype="<i2").astype(int)
    step = np.array([2 ** (3 + next(i for i, e in enumerate(_SEG_END) if abs(int(v)) + 0x84 <= e)) for v in x])
    assert np.all(np.abs(y - x.astype(int)) <= step // 2 + 1)


def test_byte_order():
    samples = [0, 1, -1, 0x1234, -0x1234, 32767, -32768]
    le = struct.pack("<7h", *samples)
    be = struct.pack(">7h", *samples)
    assert codecs.le_to_be(le) == be
    assert codecs.be_to_le(be) == le
    assert codecs.byteswap16(codecs.byteswap16(le)) == le


def _sine(rate, freq, seconds, amp=8000):
    n = int(rate * seconds)
    return (amp * np.sin(2 * math.pi * freq * np.arange(n) / rate)).astype("<i2").tobytes()


def _peak_hz(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(float)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


@pytest.mark.parametrize("src,dst", [(8000, 16000), (16000, 8000), (16000, 24000), (24000, 8000), (8000, 24000)])
def test_resampler_streaming_keeps_length_and_pitch(src, dst):
    pcm = _sine(src, 440, 1.0)
    rs = codecs.Resampler(src, dst)
    frame = src // 50 * 2
    out = b"".join(rs.process(pcm[i:i + frame]) for i in range(0, len(pcm), frame)) + rs.flush()
    assert abs(len(out) // 2 - dst) <= dst // 100  # one second in, about one second out
    assert abs(_peak_hz(out, dst) - 440) < 3


def test_resampler_same_rate_is_identity_and_rejects_odd_rates():
    pcm = _sine(8000, 300, 0.1)
    assert codecs.Resampler(8000, 8000).process(pcm) == pcm
    with pytest.raises(ValueError):
        codecs.Resampler(8000, 44100)


def test_stereo_split_and_right():
    left = np.array([1, 2, 3, -4], dtype="<i2")
    right = np.array([10, -20, 30, 40], dtype="<i2")
    inter = np.empty(8, dtype="<i2")
    inter[0::2], inter[1::2] = left, right
    l_out, r_out = codecs.stereo_split(inter.tobytes())
    assert l_out == left.tobytes() and r_out == right.tobytes()
    assert codecs.stereo_right(inter.tobytes()) == right.tobytes()


def test_mix_sums_and_clips():
    a = struct.pack("<3h", 1000, 30000, -30000)
    b = struct.pack("<2h", 2000, 10000)
    assert struct.unpack("<3h", codecs.mix(a, b)) == (3000, 32767, -30000)
