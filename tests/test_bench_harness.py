"""The relay benchmark's harness (bench/common.py: the load generator and the sink app, real processes)
counts every frame and finds every loss: a relay that drops one frame fails the step, and the sink
tells a missing, a repeated and a malformed `media` message apart without decoding the audio.

The relay here is the test's own (a few lines of gevent: the fork's WebSocket in, one Vobiz `media`
message out per frame, one frame of one stream left out on purpose): the fault it injects is what the
harness must see; callfork's relay is measured by the benchmark itself."""
import base64
import json
import os
import socket

import gevent
from gevent.server import StreamServer

from bench import common, workers

from waiting import wait_until


def _media(stamp_seq: int, sent_ns: int, payload_bytes: int = 320, truncate: int = 0) -> bytes:
    pcm = common.STAMP.pack(sent_ns, stamp_seq) + os.urandom(payload_bytes - common.STAMP.size)
    b64 = base64.b64encode(pcm).decode()
    if truncate:
        b64 = b64[:-truncate]
    text = json.dumps({"event": "media", "sequenceNumber": stamp_seq + 1, "streamId": "MZ1",
                       "media": {"track": "inbound", "timestamp": "0", "chunk": stamp_seq + 1, "payload": b64}},
                      separators=(",", ":")).encode()
    return _masked(common.OP_TEXT, text)


def _masked(opcode: int, payload: bytes) -> bytes:
    """A client frame with a real (non-zero) mask key, as a relay sends it."""
    key = os.urandom(4)
    head = common.frame_header(opcode, len(payload), True)[:-4]
    return head + key + common.apply_mask(payload, key)


def test_the_sink_counts_a_missing_a_repeated_and_a_malformed_media_message():
    sink = common.Child("bench.common", "sink", name="sink-test")
    try:
        t0 = common.now_ns()
        sink.call("window", t0=t0, t1=t0 + 600 * 10**9)
        sock, _rest = common.ws_client_connect(sink.info["url"] + "/s1", subprotocol=None)
        start = json.dumps({"event": "start", "start": {"streamId": "MZ1"}}).encode()
        frames = [_masked(common.OP_TEXT, start)]
        for seq in (0, 1, 2, 3, 5, 6, 6, 7):          # 4 missing, 6 repeated
            frames.append(_media(seq, common.now_ns()))
        frames.append(_media(8, common.now_ns(), truncate=4))   # a shorter payload
        sock.sendall(b"".join(frames[:4]))
        sock.sendall(b"".join(frames[4:]))             # frames split across reads too
        stats = wait_until(lambda: (lambda s: s if s["recv_total"] == 9 else None)(sink.call("stats")), 10,
                           "the sink counted the 9 media messages")
        assert stats["seq_gaps"] == 1
        assert stats["reordered"] == 1
        assert stats["bad"] == 1
        assert stats["per_stream_recv"] == {"s1": 9}
        assert stats["samples"] == 9 and stats["latency_ms"][0] >= 0
        # the load generator sent 0..8 (9 frames) plus the one lost: the repeat does not hide it
        assert common.lost_frames({"s1": 10}, stats["per_stream_recv"]) == 1
        assert common.lost_frames({"s1": 9, "s2": 5}, stats["per_stream_recv"]) == 5
        sock.close()
    finally:
        sink.close()


class DroppingRelay:
    """Fork WebSockets in (the load generator's), Vobiz media out to the sink, one message per frame,
    except frame `drop_seq` of stream `drop_sid`, which it leaves out."""

    def __init__(self, sink_url: str, drop_sid: str, drop_seq: int):
        self.sink_url, self.drop_sid, self.drop_seq = sink_url, drop_sid, drop_seq
        self.server = StreamServer(("127.0.0.1", 0), self.handle)
        self.server.start()
        self.dropped = 0
        self.forwarded = 0

    def handle(self, sock, _peer) -> None:
        from audio_fork.wsframes import FrameReader

        accepted = common.ws_accept(sock, first_subprotocol=True)
        if accepted is None:
            return
        sid = accepted[1].path.rsplit("/", 1)[-1]
        app, _ = common.ws_client_connect(f"{self.sink_url}/{sid}", subprotocol=None)
        app.sendall(_masked(common.OP_TEXT, b'{"event":"start"}'))
        reader = FrameReader()
        k = 0
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                for op, _fin, payload in reader.feed(data):
                    if op == common.OP_CLOSE:
                        return
                    if op != common.OP_BINARY:
                        continue
                    if sid == self.drop_sid and k == self.drop_seq:
                        self.dropped += 1
                    else:
                        b64 = base64.b64encode(payload).decode()
                        app.sendall(_masked(common.OP_TEXT, json.dumps(
                            {"event": "media", "media": {"payload": b64}}, separators=(",", ":")).encode()))
                        self.forwarded += 1
                    k += 1
        finally:
            app.close()
            sock.close()


def _switch_command(port: int, lines: list) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        f = s.makefile("rwb")
        for i, line in enumerate(lines):
            f.write(f"{i} {line}\n".encode())
        f.flush()
        for _ in lines:
            assert b"+OK" in f.readline()


def _row(drop_seq: int) -> dict:
    """Three streams for a 1 s window through DroppingRelay: the row as bench/workers.py builds it."""
    sink = common.Child("bench.common", "sink", name="sink-test")
    gen = common.Child("bench.common", "loadgen", name="loadgen-test")
    try:
        relay = DroppingRelay(sink.info["url"], "d1", drop_seq)
        port = relay.server.address[1]
        _switch_command(gen.info["switch"], [
            f"uuid_audio_fork u{i} start ws://127.0.0.1:{port}/fork/d{i} mono 8k audio_fork {{}}" for i in range(3)])
        wait_until(lambda: gen.call("go", hold=True)["connected"] == 3, 10, "3 forks connected")
        gen.call("go")
        t0 = common.now_ns() + 300_000_000
        t1 = t0 + 1_000_000_000
        for c in (gen, sink):
            c.call("window", t0=t0, t1=t1)
        gevent.sleep((t1 - common.now_ns()) / 1e9)   # the measurement window's end, set above
        g = gen.call("stats")   # the window is over: its sent counts are final
        gen.call("stop_all")
        wait_until(lambda: sink.call("stats")["recv_total"] == relay.forwarded, 10,
                   "every frame the relay forwarded at the sink")
        s = sink.call("stats")
        relay.server.stop()
        lost = common.lost_frames(g["per_stream_sent"], s["per_stream_recv"])
        row = {"n": 3, "started": 3, "sent": g["sent_window"], "lost": lost, "seq_gaps": s["seq_gaps"],
               "reordered": s["reordered"], "bad": s["bad"], "lat_p99": s["latency_ms"][1], "dropped": relay.dropped}
        return row
    finally:
        gen.close()
        sink.close()


def test_a_frame_a_relay_drops_in_the_window_fails_the_step():
    # frame 40 of stream d1 is sent about 0.4-0.8 s after go: inside the 1 s window that starts 0.3 s later
    row = _row(drop_seq=40)
    assert row["dropped"] == 1
    assert row["sent"] >= 3 * 45
    assert row["lost"] == 1 and row["seq_gaps"] == 1
    assert not workers.carried(row, 1.0)


def test_a_frame_dropped_before_the_window_fails_the_step_too():
    # frame 2 is sent before the window opens: the window's counts match, the sequence gap does not
    row = _row(drop_seq=2)
    assert row["dropped"] == 1
    assert row["lost"] == 0 and row["seq_gaps"] == 1
    assert not workers.carried(row, 1.0)
    # the gap is all that fails it: the same row without it (on schedule, low latency) is carried
    assert workers.carried(dict(row, seq_gaps=0, sent=150, lat_p99=1.0), 1.0)
