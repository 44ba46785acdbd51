"""audio_fork.wsserver.ServerWebSocket over a real socket pair: `receive_batch` hands back every
message one read brought (answering pings on the way), and a peer that never answers our Close is
dropped after `close_timeout`, so a reader waiting without a timeout ends."""
import gc
import socket
import weakref

import gevent
from websockets.frames import Frame, Opcode

from audio_fork.wsserver import ServerWebSocket

from waiting import wait_until

UPGRADE = (b"GET /fork/x?token=t HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def client_frame(opcode, data, fin=True):
    return Frame(opcode, data, fin).serialize(mask=True)


def read_server_frames(sock, count, timeout=5.0):
    """`count` frames the server sent (unmasked), parsed with websockets' parser."""
    from websockets.streams import StreamReader

    reader = StreamReader()
    out = []
    sock.settimeout(timeout)
    while len(out) < count:
        gen = Frame.parse(reader.read_exact, mask=False, max_size=None)
        while True:
            try:
                next(gen)  # runs until the frame is whole, or until it needs more bytes
            except StopIteration as stop:
                out.append(stop.value)
                break
            reader.feed_data(sock.recv(65536))
    return out


def connected_pair(**kw):
    client, server_sock = socket.socketpair()
    conn = ServerWebSocket(server_sock, ("test", 0), **kw)
    client.sendall(UPGRADE)
    req = conn.read_request(5.0)
    assert req.path == "/fork/x" and req.query == {"token": "t"}
    conn.accept()
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += client.recv(4096)
    assert reply.startswith(b"HTTP/1.1 101")
    return client, conn


def test_receive_batch_returns_everything_one_read_brought():
    client, conn = connected_pair()
    try:
        client.sendall(client_frame(Opcode.TEXT, b'{"meta":1}')
                       + client_frame(Opcode.BINARY, b"\x01" * 320)
                       + client_frame(Opcode.PING, b"hi")
                       + client_frame(Opcode.BINARY, b"\x02" * 160, fin=False)
                       + client_frame(Opcode.CONT, b"\x03" * 160)
                       + client_frame(Opcode.BINARY, b"\x04" * 320))
        msgs = conn.receive_batch(None)
        assert msgs == ['{"meta":1}', b"\x01" * 320, b"\x02" * 160 + b"\x03" * 160, b"\x04" * 320]
        (pong,) = read_server_frames(client, 1)
        assert pong.opcode is Opcode.PONG and pong.data == b"hi"
        # a read that brings only part of a frame: the call waits for the rest
        frame = client_frame(Opcode.BINARY, b"\x05" * 320)
        g = gevent.spawn(conn.receive_batch, None)
        client.sendall(frame[:100])
        gevent.sleep(0.05)  # a negative check: with part of a frame read, the call must still be waiting
        assert not g.ready()
        client.sendall(frame[100:])
        assert g.get(timeout=5) == [b"\x05" * 320]
        # the peer's Close: answered, then None
        client.sendall(client_frame(Opcode.CLOSE, (1000).to_bytes(2, "big")))
        assert conn.receive_batch(None) is None
        assert conn.close_code == 1000 and conn.closed
    finally:
        client.close()
        conn.abort()


def test_messages_before_a_close_in_the_same_read_are_delivered():
    client, conn = connected_pair()
    try:
        client.sendall(client_frame(Opcode.BINARY, b"\x01" * 320)
                       + client_frame(Opcode.CLOSE, (1001).to_bytes(2, "big")))
        assert conn.receive_batch(None) == [b"\x01" * 320]
        assert conn.receive_batch(None) is None and conn.close_code == 1001
    finally:
        client.close()


def test_a_peer_that_never_answers_our_close_is_dropped():
    client, conn = connected_pair(close_timeout=0.3)
    try:
        reader = gevent.spawn(conn.receive_batch, None)  # the relay's module loop: no timeout
        gevent.sleep(0)
        conn.close(1000)
        (close,) = read_server_frames(client, 1)
        assert close.opcode is Opcode.CLOSE and close.data[:2] == (1000).to_bytes(2, "big")
        # the client says nothing more: the reader ends once close_timeout has passed
        wait_until(reader.ready, 3.0, "reader released")
        assert reader.value is None
        assert conn.closed and conn.close_code == 1006
    finally:
        client.close()


def test_a_peer_that_answers_our_close_is_not_cut_short():
    client, conn = connected_pair(close_timeout=0.3)
    try:
        reader = gevent.spawn(conn.receive_batch, None)
        gevent.sleep(0)
        conn.close(1000)
        read_server_frames(client, 1)
        client.sendall(client_frame(Opcode.CLOSE, (1000).to_bytes(2, "big")))
        assert reader.get(timeout=3) is None
        assert conn.close_code == 1000
        gevent.sleep(0.4)  # past close_timeout: the timer must not overwrite the code
        assert conn.close_code == 1000
    finally:
        client.close()


def test_a_finished_closing_handshake_leaves_nothing_waiting_on_the_connection():
    """Our Close and the peer's cross (as mod_audio_fork's do on `stop`): once the handshake is
    over, the close timer no longer holds the connection, so refcounting frees it at once."""
    client, conn = connected_pair(close_timeout=30)
    gc.collect()
    gc.disable()
    try:
        client.sendall(client_frame(Opcode.CLOSE, (1000).to_bytes(2, "big")))
        conn.close(1000)
        assert conn.receive_batch(3) is None
        ref = weakref.ref(conn)
        del conn
        gevent.sleep(0)
        assert ref() is None
    finally:
        gc.enable()
        client.close()


# -- the relay's own frame splitting (`_take`) against the protocol object alone ----------------------


def raw_frame(b0: int, payload: bytes, rng, masked: bool = True) -> bytes:
    """Any frame, valid or not: first byte as given, the length, a random key when masked."""
    n = len(payload)
    m = 0x80 if masked else 0
    if n < 126:
        head = bytes((b0, m | n))
    elif n < 65536:
        head = bytes((b0, m | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, m | 127)) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = rng.randbytes(4)
    masked_payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked_payload


def random_stream(rng, max_message):
    """A plausible module stream: audio, metadata text, pings/pongs, fragmented messages, now and
    then something invalid, usually a Close at the end."""
    out = []
    for _ in range(rng.randrange(1, 25)):
        kind = rng.random()
        if kind < 0.5:
            out.append(raw_frame(0x82, rng.randbytes(rng.choice((0, 1, 125, 126, 320, 640, 1999))), rng))
        elif kind < 0.6:
            out.append(raw_frame(0x81, ('{"meta":"%s"}' % ("é" * rng.randrange(0, 80))).encode(), rng))
        elif kind < 0.7:
            out.append(raw_frame(rng.choice((0x89, 0x8A)), rng.randbytes(rng.randrange(0, 126)), rng))
        elif kind < 0.8:
            first = rng.choice((0x01, 0x02))
            parts = rng.randrange(2, 5)
            for i in range(parts):
                b0 = (first if i == 0 else 0x00) | (0x80 if i == parts - 1 else 0)
                out.append(raw_frame(b0, "ab€".encode()[: rng.randrange(0, 5)] * 3, rng))
                if rng.random() < 0.3:  # a ping between fragments is allowed
                    out.append(raw_frame(0x89, b"p", rng))
        elif kind < 0.95:
            out.append(raw_frame(0x82, rng.randbytes(rng.randrange(1, 400)), rng))
        else:
            bad = rng.choice([
                raw_frame(0x82, b"x" * 10, rng, masked=False),     # unmasked
                raw_frame(0xC2, b"x" * 10, rng),                   # RSV1 without an extension
                raw_frame(0x83, b"x", rng),                        # reserved opcode
                raw_frame(0x89, b"x" * 126, rng),                  # control frame too long
                raw_frame(0x82, b"x" * (max_message + 1), rng),    # too big
                raw_frame(0x80, b"x", rng),                        # continuation of nothing
                raw_frame(0x02, b"x", rng) + raw_frame(0x82, b"y", rng),  # new message mid-fragment
                raw_frame(0x81, b"\xff\xfe", rng),                 # text that is not UTF-8
                raw_frame(0x88, b"\x03", rng),                     # close frame too short
            ])
            out.append(bad)
    if rng.random() < 0.8:
        out.append(raw_frame(0x88, rng.choice((1000, 1001, 4000)).to_bytes(2, "big"), rng))
    return b"".join(out)


def run_split(stream: bytes, cuts: list, split: bool, max_message: int):
    """Feed `stream` in the chunks given by `cuts` through a real socket pair; return what the
    owner saw (messages in order, close code) and every byte the server wrote back."""
    client, conn = connected_pair(max_message=max_message, close_timeout=30, split_audio=split)
    seen = []
    try:
        bounds = [0] + cuts + [len(stream)]
        for a, b in zip(bounds, bounds[1:]):
            if conn.closed:
                break
            client.sendall(stream[a:b])
            seen.extend(conn.receive_read(None) or [])
        if not conn.closed:
            client.shutdown(socket.SHUT_WR)  # EOF without a Close: 1006
            while not conn.closed:
                batch = conn.receive_batch(5.0)
                if batch is None:
                    break
                seen.extend(batch)
        client.settimeout(2.0)
        written = b""
        while True:
            try:
                chunk = client.recv(65536)
            except (OSError, socket.timeout):
                break
            if not chunk:
                break
            written += chunk
        return seen, conn.close_code, written
    finally:
        client.close()
        conn.abort()


def test_own_frame_splitting_matches_the_protocol_object_on_random_streams():
    import random

    rng = random.Random(20261121)
    max_message = 2000
    for case in range(150):
        stream = random_stream(rng, max_message)
        cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randrange(0, 12))))
        if rng.random() < 0.3:
            cuts = list(range(1, len(stream)))  # one byte at a time
        fast = run_split(stream, cuts, True, max_message)
        reference = run_split(stream, cuts, False, max_message)
        assert fast == reference, f"case {case}: {stream[:60]!r}... cut at {cuts}"


def test_sends_that_fill_the_socket_buffer_wait_and_arrive_whole():
    client, conn = connected_pair(send_timeout=10.0)
    try:
        payloads = [bytes([i]) * 65536 for i in range(64)]  # 4 MiB: far more than the socket buffers

        def send_all():
            for p in payloads:
                conn.send_bytes(p)

        sender = gevent.spawn(send_all)
        gevent.sleep(0.1)  # a negative check: nothing read yet, so the sender must still be waiting
        assert not sender.ready()  # 4 MiB cannot fit in the socket buffers: it waits, it does not drop
        frames = read_server_frames(client, len(payloads), timeout=10.0)
        sender.get(timeout=10)
        assert [f.data for f in frames] == payloads
    finally:
        client.close()
        conn.abort()


def test_a_peer_that_never_reads_makes_the_send_time_out():
    client, conn = connected_pair(send_timeout=0.3)
    try:
        def send_all():
            for _ in range(256):
                conn.send_bytes(b"\x00" * 65536)

        sender = gevent.spawn(send_all)
        wait_until(sender.ready, 5.0, "send timed out")
        assert "send timeout" in str(sender.exception)
    finally:
        client.close()
        conn.abort()


def test_frames_sent_right_behind_the_upgrade_request_are_not_lost():
    """A client that does not wait for the 101 (mod_audio_fork does): a whole frame and part of the
    next one in the same write as the request, the rest later."""
    client, server_sock = socket.socketpair()
    conn = ServerWebSocket(server_sock, ("test", 0))
    try:
        second = client_frame(Opcode.BINARY, b"\x07" * 320)
        client.sendall(UPGRADE + client_frame(Opcode.TEXT, b"first") + second[:50])
        req = conn.read_request(5.0)
        assert req.path == "/fork/x"
        conn.accept()
        client.sendall(second[50:] + client_frame(Opcode.BINARY, b"\x08" * 320))
        got = []
        while len(got) < 3:
            got += conn.receive_batch(5.0)
        assert got == ["first", b"\x07" * 320, b"\x08" * 320]
    finally:
        client.close()
        conn.abort()
