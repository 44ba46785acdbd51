"""audio_fork.downstream.Downstream: the app's audio in every encoding and rate it may send comes
out as L16 8 kHz little endian, resampled as one stream across messages; `flush` gives back what
the resampler holds, `reset` forgets it."""
import numpy as np

from audio_fork import codecs
from audio_fork.downstream import Downstream


def tone(rate, seconds, freq=440.0):
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * np.pi * freq * t)).astype("<i2")


def dominant_hz(pcm: bytes, rate=8000) -> float:
    x = np.frombuffer(pcm, "<i2").astype(float)
    return np.argmax(np.abs(np.fft.rfft(x))) * rate / len(x)


def test_8k_l16_little_endian_passes_as_is_and_big_endian_is_swapped():
    audio = tone(8000, 0.1).tobytes()
    assert Downstream().convert(audio, "l16", 8000) == audio
    be = tone(8000, 0.1).astype(">i2").tobytes()
    assert Downstream("be").convert(be, "l16", 8000) == audio


def test_mulaw_is_decoded():
    audio = tone(8000, 0.1).tobytes()
    mu = codecs.ulaw_encode(audio)
    out = Downstream().convert(mu, "mulaw", 8000)
    assert len(out) == len(audio)
    assert np.max(np.abs(np.frombuffer(out, "<i2").astype(int) - np.frombuffer(audio, "<i2"))) < 300


def test_16k_and_24k_are_resampled_as_one_stream_across_messages_and_flush_gives_the_rest():
    for rate in (16000, 24000):
        down = Downstream()
        audio = tone(rate, 1.0).tobytes()
        step = len(audio) // 7 // 2 * 2        # uneven pieces
        out = b"".join(down.convert(audio[i:i + step], "l16", rate) for i in range(0, len(audio), step))
        out += b"".join(down.flush())
        assert abs(len(out) - 16000) <= 4      # 1 s at 8 kHz
        assert abs(dominant_hz(out) - 440) < 3
        assert down.flush() == []              # nothing held any more


def test_reset_forgets_what_the_resampler_held():
    down = Downstream()
    down.convert(tone(16000, 0.05).tobytes(), "l16", 16000)
    down.reset()
    assert down.flush() == []
