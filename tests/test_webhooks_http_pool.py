"""webhooks.http_client's pools: a kept-alive connection's "was it dropped?" check answers from the
OS without a trip through the gevent hub, and still sees a connection the server closed or spoke on."""
import gevent
import gevent.event
import greenlet
from gevent.server import StreamServer

from webhooks import http_client


def _server(close_after_response=False, then_say=b""):
    """A server that answers each request with 200 OK; then, on the first connection, closes it
    (`close_after_response`) or says `then_say` unasked (as a server timing out an idle connection
    may: a 408) and keeps it open."""
    requests_seen = []
    closed = gevent.event.Event()   # set once the server has closed a connection after its response
    spoke = gevent.event.Event()    # set once the server has said `then_say` on an idle connection

    def handle(sock, _peer):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    sock.close()
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            requests_seen.append(head.split(b"\r\n", 1)[0])
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
            if close_after_response:
                gevent.sleep(0.05)             # the client has the response and keeps the connection
                sock.close()
                closed.set()
                return
            if then_say and not spoke.is_set():
                gevent.sleep(0.05)             # the server's delay: its extra bytes come after the response
                sock.sendall(then_say)
                spoke.set()

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    server.conn_closed = closed
    server.spoke = spoke
    return server, requests_seen


def _get(pool, url):
    response = http_client.send(pool, "GET", url, None, {}, (2, 2))
    body = response.read()
    http_client.release(response, True)
    return body


def test_the_dropped_check_on_a_kept_alive_connection_never_switches_to_the_hub():
    server, _ = _server(close_after_response=False)
    try:
        pool = http_client.new_pool()
        url = "http://127.0.0.1:%d/x" % server.server_port
        assert _get(pool, url) == b"OK"
        conn = pool.connection_from_url(url).pool.queue[-1]
        assert conn is not None and conn.sock is not None
        switches = []
        previous = greenlet.settrace(lambda event, args: switches.append(event))
        try:
            connected = conn.is_connected
        finally:
            greenlet.settrace(previous)
        assert connected is True
        assert switches == []       # urllib3's own check polls through gevent: a switch to the hub
    finally:
        server.stop()


def test_a_connection_the_server_closed_is_replaced_not_reused():
    server, seen = _server(close_after_response=True)
    try:
        pool = http_client.new_pool()
        url = "http://127.0.0.1:%d/x" % server.server_port
        assert _get(pool, url) == b"OK"
        conn = pool.connection_from_url(url).pool.queue[-1]
        assert server.conn_closed.wait(5)       # the server has closed it
        assert conn.is_connected is False
        assert _get(pool, url) == b"OK"          # retries=False: reusing the dead socket would fail
        assert len(seen) == 2
    finally:
        server.stop()


def test_a_connection_the_server_spoke_on_unasked_is_replaced_not_reused():
    server, seen = _server(then_say=b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
    try:
        pool = http_client.new_pool()
        url = "http://127.0.0.1:%d/x" % server.server_port
        assert _get(pool, url) == b"OK"
        conn = pool.connection_from_url(url).pool.queue[-1]
        assert server.spoke.wait(5)             # data waits on the idle connection; it is still open
        assert conn.is_connected is False
        assert _get(pool, url) == b"OK"          # the 408 is not read as the answer to this request
        assert len(seen) == 2
    finally:
        server.stop()
