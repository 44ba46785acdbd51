"""audio_fork.framing: exact 20 ms frames out of the message sizes mod_audio_fork really sends
(fs-captures: 320 / 640 / 1280 bytes, a coalesced 640-byte message in a 320-byte stream)."""
import json
import os

import pytest

from audio_fork.framing import FrameAssembler, frame_bytes

CAPTURES = os.path.join(os.path.dirname(__file__), "fixtures", "fs-captures")


def _pattern(n, seed):
    return bytes((seed * 31 + i * 7) & 0xFF for i in range(n))


@pytest.mark.parametrize("rate,channels,size", [(8000, 1, 320), (16000, 1, 640), (8000, 2, 640), (16000, 2, 1280)])
def test_frame_size_formula_matches_captures(rate, channels, size):
    assert frame_bytes(rate, channels) == size


def test_capture_message_sizes_reassemble_to_exact_frames():
    with open(os.path.join(CAPTURES, "audio-fork-results-jambonz.json")) as fh:
        data = json.load(fh)
    burst = next(s for s in data["scenarios"] if s["name"] == "D-bidi-burst")
    sizes = [size for _t, size in burst["ws"]["binary_frames_from_fs_ms_size"]]
    assert 640 in sizes and set(sizes) == {320, 640}
    stream = b"".join(_pattern(n, i) for i, n in enumerate(sizes))
    fa = FrameAssembler(320)
    out = []
    pos = 0
    for n in sizes:
        out += fa.feed(stream[pos:pos + n])
        pos += n
    assert all(len(f) == 320 for f in out)
    assert b"".join(out) == stream
    assert len(out) == sum(sizes) // 320 and fa.pending == 0


def test_coalesced_and_split_messages():
    fa = FrameAssembler(320)
    a, b, c = _pattern(320, 1), _pattern(320, 2), _pattern(320, 3)
    assert fa.feed(a + b) == [a, b]           # two frames coalesced in one message
    assert fa.feed(c[:100]) == []             # a partial frame is held
    assert fa.pending == 100
    assert fa.feed(c[100:250]) == []
    assert fa.feed(c[250:] + a[:10]) == [c]  # completed, with the start of the next kept
    assert fa.pending == 10
    assert fa.flush(pad=True) == a[:10] + b"\x00" * 310
    assert fa.flush() is None


@pytest.mark.parametrize("size", [640, 1280])
def test_other_frame_sizes_with_odd_splits(size):
    fa = FrameAssembler(size)
    data = _pattern(size * 5, 9)
    out = []
    for i in range(0, len(data), 333):
        out += fa.feed(data[i:i + 333])
    assert b"".join(out) == data[: len(out) * size] and len(out) == 5 - (1 if fa.pending else 0)
    assert all(len(f) == size for f in out)
