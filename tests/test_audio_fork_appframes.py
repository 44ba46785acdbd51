"""audio_fork.appframes: the masked text frames callfork writes to the app, checked with real
parsers (websockets' server-side frame parser, and its whole server protocol object), and the
mask-key pool."""
import os

import pytest
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

from audio_fork import appframes
from audio_fork.appframes import MaskKeys, text_frame, text_frames


def parse_client_frames(data: bytes, count: int = 1) -> list:
    """`count` frames as a server parses them (mask required), with websockets' own parser; all of
    `data` must be used."""
    reader = StreamReader()
    reader.feed_data(data)
    frames = []
    for _ in range(count):
        gen = Frame.parse(reader.read_exact, mask=True, max_size=None)
        try:
            next(gen)
        except StopIteration as stop:
            frames.append(stop.value)
        else:
            raise AssertionError("incomplete frame")
    assert not reader.buffer, "bytes left over after the frames"
    return frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 530, 65535, 65536, 70000])
def test_frames_of_every_length_class_parse(size):
    text = ("é" + "x" * size)[:size] if size else ""
    data = text_frame(text)
    (frame,) = parse_client_frames(data)
    assert frame.opcode is Opcode.TEXT and frame.fin
    assert not (frame.rsv1 or frame.rsv2 or frame.rsv3)
    assert frame.data.decode("utf-8") == text
    # header length class: 7-bit, 16-bit or 64-bit length, then the 4-byte key
    n = len(text.encode("utf-8"))
    head = 2 + (0 if n < 126 else 2 if n < 65536 else 8)
    assert len(data) == head + 4 + n
    assert data[1] & 0x80  # the mask bit


def test_a_server_protocol_reads_them_too():
    texts = ['{"event":"media","payload":"%s"}' % ("A" * 427), "x" * 200, ""]
    server = ServerProtocol(state=State.OPEN)
    server.receive_data(text_frames(texts))
    frames = server.events_received()
    assert server.parser_exc is None and server.state is State.OPEN
    assert [(f.opcode, f.fin) for f in frames] == [(Opcode.TEXT, True)] * len(texts)
    assert [f.data.decode("utf-8") for f in frames] == texts


def test_each_frame_gets_a_fresh_key_from_the_pool():
    keys = MaskKeys(size=4096)
    payload = "m" * 530
    frames = [text_frame(payload, keys) for _ in range(1024)]
    used = [f[4:8] for f in frames]  # 16-bit length: 2 + 2 bytes of header, then the key
    assert keys.refills == 1 and len(set(used)) > 1000  # 1024 random keys: all but chance collisions
    assert all(parse_client_frames(f)[0].data.decode() == payload for f in frames[:50])
    text_frame(payload, keys)
    assert keys.refills == 2  # the 1025th key needed a new block


def test_pool_hands_out_each_urandom_block_once_in_order(monkeypatch):
    blocks = []

    def fake_urandom(n):
        block = bytes((len(blocks) * 16 + i) % 256 for i in range(n))
        blocks.append(block)
        return block

    monkeypatch.setattr(appframes.os, "urandom", fake_urandom)
    keys = MaskKeys(size=8)
    got = [keys.take() for _ in range(5)]
    assert [len(k) for k in got] == [4] * 5
    assert b"".join(got[:4]) == blocks[0] + blocks[1]  # consecutive slices, none reused
    assert got[4] == blocks[2][:4] and keys.refills == 3
    with pytest.raises(ValueError):
        MaskKeys(size=6)


def test_default_pool_draws_from_os_urandom():
    assert appframes.os.urandom is os.urandom
    a, b = text_frame("same text"), text_frame("same text")
    assert a[2:6] != b[2:6]  # different keys (a collision is a 2**-32 event)
    assert [f.data for f in parse_client_frames(a + b, 2)] == [b"same text", b"same text"]
