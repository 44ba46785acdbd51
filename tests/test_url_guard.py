"""`allow_private_urls = false` against an adversary (issue 12): URLs that two parsers read as two
hosts, the stream's WebSocket, DNS rebinding between the check and the connect, and addresses that
are not public without being "private" (CGNAT, 6to4, NAT64, ...).

Names are answered by an in-process resolver (`dns`: socket.getaddrinfo and gevent's replaced for
the test, IP literals resolved as usual, unknown names fail): no query leaves the process, and a
name that "resolves" to a public address is only ever checked, never connected to (the rebinding
answers give the public address to the first lookup, the check, and loopback afterwards). Every
server is a real one on 127.0.0.1 that must see nothing.
"""
import ipaddress
import socket
import ssl
import subprocess

import gevent.socket
import pytest
import requests
from gevent.server import StreamServer

from audio_fork import StreamSession, StreamSpec, StreamStartError
from audio_fork.app_connection import AppConnectError, AppConnection
from callfork.media_cache import MediaCache, MediaError
from callfork.service import Service
from callfork.verb_services import VerbServices
from esl_app import load_config
from webhooks import FetchError, UrlError, checked_addresses, clean_url, fetch_document, is_public_address
from webhooks.http_client import RequestFailed, new_pool, release, send

from harness import Stack, free_port
from http_receiver import HttpReceiver, Reply
from outbox_support import db_path, outboxes  # noqa: F401 (fixtures)
from raw_ws_app import RawApp
from relay_support import relay  # noqa: F401 (fixture)

PUBLIC = "93.184.216.34"


class FakeDNS:
    """socket.getaddrinfo for names in `table`: each lookup takes the next answer of the name (the
    last one stays); an answer is one address or a list of them. IP literals go to the real
    getaddrinfo (no query: they are numeric); any other name fails as an unknown name would."""

    def __init__(self, real):
        self.real = real
        self.table = {}
        self.lookups = []

    def set(self, name, *answers):
        self.table[name] = list(answers)

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(name.split("%")[0])
            return self.real(host, port, family, type, proto, flags)
        except ValueError:
            pass
        key = name.lower().rstrip(".")
        self.lookups.append(key)
        answers = self.table.get(key)
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        infos = []
        for address in [answer] if isinstance(answer, str) else answer:
            infos.extend(self.real(address, port, family, type, proto, flags))
        return infos

    def count(self, name):
        return self.lookups.count(name)


@pytest.fixture
def dns(monkeypatch):
    fake = FakeDNS(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    monkeypatch.setattr(gevent.socket, "getaddrinfo", fake)
    fake.set("example.com", PUBLIC)
    return fake


@pytest.fixture
def receiver():
    # a service on loopback that answers 404: what a port scan through callfork would read
    with HttpReceiver(lambda req: Reply(status=404, body=b"not here")) as server:
        yield server


def _fetch(url):
    return fetch_document(url, "POST", {"CallUUID": "u1"}, auth_token="t", connect_timeout=1, read_timeout=2,
                          allow_private=False)


def _bypass(port, scheme="http"):
    return f"{scheme}://127.0.0.1:{port}\\@example.com/x"


# -- 1. one URL, one host: what is checked is what urllib3 connects to ----------------------------

@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080\\@example.com/x",      # urllib.parse: example.com; urllib3: 127.0.0.1:8080
    "https://127.0.0.1:8443\\@example.com/",
    "http://example.com\\@127.0.0.1/",
    "http://example.com/a\\b",                     # a backslash anywhere: clients differ on it
    "http://user:pw@example.com/x",                # user info: never sent, only room for tricks
    "http://example.com@127.0.0.1/",
    "http://a@b@example.com/",
    "http://example.com\u200b/x",                  # an invisible character
    "http://example.com/\u2028x",
])
def test_ambiguous_urls_are_refused_in_every_mode(dns, url):
    for allow_private in (True, False):
        with pytest.raises(UrlError) as info:
            clean_url(url, allow_private=allow_private)
        assert "refused" in str(info.value) or "control characters" in str(info.value)


def test_plain_urls_still_pass():
    assert clean_url("http://Example.COM:8080/a?b=1#f") == "http://Example.COM:8080/a?b=1"
    assert clean_url("http://b\u00fccher.example/x") == "http://b\u00fccher.example/x"
    assert clean_url("http://[::1]:8080/x") == "http://[::1]:8080/x"
    assert clean_url("ws://127.0.0.1:9/ws", schemes=("ws", "wss")) == "ws://127.0.0.1:9/ws"


def test_a_backslash_url_does_not_reach_the_loopback_service_it_hides(dns, receiver, outboxes, db_path, tmp_path):
    url = _bypass(receiver.port)
    # <Redirect>, action and transfer documents (fetch_document)
    with pytest.raises(FetchError) as info:
        _fetch(url)
    assert info.value.kind == "bad_url" and info.value.status is None
    assert "refused" in str(info.value) and "404" not in str(info.value)
    # statusCallbackUrl and every other webhook (the outbox)
    box = outboxes(db_path, allow_private=False)
    box.start()
    box.enqueue("call-1", url, "POST", {"Event": "StartStream"}, event="StartStream")
    box.flush(5)
    [row] = box.deliveries("call-1")
    assert row["status"] == "failed" and "refused" in row["last_error"] and "404" not in row["last_error"]
    # <Play> (the media cache)
    media = MediaCache(tmp_path / "media", allow_private=False, connect_timeout=1, read_timeout=2)
    with pytest.raises(MediaError, match="refused"):
        media.local_file(url)
    # a stream's WebSocket
    services = _services(tmp_path, allow_private=False)
    with pytest.raises(ValueError, match="refused"):
        services.check_url(_bypass(receiver.port, "ws"), ("ws", "wss"))
    assert receiver.requests == []


def test_rest_answer_and_transfer_urls_that_hide_a_loopback_host_are_refused():
    with Stack(env={"CALLFORK_SERVER_ALLOW_PRIVATE_URLS": "false"}) as stack:
        hidden = _bypass(stack.app.port)
        body = {"from": "15551230001", "to": "15557654321", "answer_url": hidden}
        resp = requests.post(stack.api_url("/Call/"), headers=stack.api_headers(), json=body, timeout=5)
        assert resp.status_code == 400 and "refused" in resp.json()["error"]
        resp = requests.post(stack.api_url("/Call/3f1b6c1e-0d7e-4c1e-9a51-0f6a0b7f1d2c/"),
                             headers=stack.api_headers(), json={"aleg_url": hidden}, timeout=5)
        assert resp.status_code == 400 and "refused" in resp.json()["error"]
        assert stack.app.requests == []


# -- 2. the stream's WebSocket ----------------------------------------------------------------------

def test_the_websocket_client_does_not_follow_a_redirect():
    elsewhere = RawApp()
    redirecting = RawApp(answer=lambda req, key: (
        f"HTTP/1.1 302 Found\r\nLocation: {elsewhere.url}\r\nContent-Length: 0\r\n\r\n").encode())
    try:
        with pytest.raises(AppConnectError, match="HTTP 302"):
            AppConnection.connect(redirecting.url, timeout=2)
        assert len(redirecting.requests) == 1 and elsewhere.requests == []
    finally:
        redirecting.stop()
        elsewhere.stop()


def test_the_websocket_dials_the_address_resolve_gave_and_keeps_the_name_for_host(dns):
    app = RawApp()
    port = app.server.server_port
    dns.set("app.test", "127.0.0.2")    # nothing listens there: a second lookup would be refused
    loopback = lambda host, port: socket.getaddrinfo("127.0.0.1", port, 0, socket.SOCK_STREAM)  # noqa: E731
    try:
        conn = AppConnection.connect(f"ws://app.test:{port}/app", timeout=3, resolve=loopback)
        conn.shutdown()
        assert f"\r\nHost: app.test:{port}\r\n" in app.requests[0]
        assert dns.count("app.test") == 0
    finally:
        app.stop()


def test_the_websocket_keeps_the_name_for_tls(dns, tmp_path):
    seen = []
    server = _tls_server(tmp_path, seen)
    try:
        loopback = lambda host, port: socket.getaddrinfo("127.0.0.1", port, 0, socket.SOCK_STREAM)  # noqa: E731
        with pytest.raises(AppConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            AppConnection.connect(f"wss://app.test:{server.server_port}/x", timeout=3, resolve=loopback)
        assert seen == ["app.test"]
    finally:
        server.stop(timeout=1)


def test_a_stream_to_a_refused_address_fails_before_connecting(dns, relay, tmp_path):
    app = RawApp()
    services = _services(tmp_path, allow_private=False)
    events = []
    try:
        spec = StreamSpec(stream_id="s1", call_uuid="c1", url=app.url, connect_timeout=2,
                          resolve=services.connect_addresses)
        with pytest.raises(StreamStartError, match="refused"):
            StreamSession(spec, relay, lambda cmd: "+OK", lambda name, detail: events.append((name, detail))).start()
        assert ("app_failed", {"error": events[0][1]["error"]}) == events[0] and "refused" in events[0][1]["error"]
        assert app.requests == [] and app.socks == []
    finally:
        app.stop()


# -- 3. DNS rebinding: the address connected to is the one checked ---------------------------------

def _rebinding(dns, name="rebind.test"):
    dns.set(name, PUBLIC, "127.0.0.1")   # the check sees a public address, any later lookup loopback
    return name


def test_a_fetch_connects_to_the_address_it_checked(dns, receiver):
    name = _rebinding(dns)
    with pytest.raises(FetchError) as info:
        _fetch(f"http://{name}:{receiver.port}/answer")
    assert info.value.kind == "bad_url" and "refused" in str(info.value) and info.value.status is None
    assert receiver.requests == [] and dns.count(name) == 2


def test_a_webhook_connects_to_the_address_it_checked(dns, receiver, outboxes, db_path):
    name = _rebinding(dns)
    box = outboxes(db_path, allow_private=False)
    box.start()
    box.enqueue("call-2", f"http://{name}:{receiver.port}/status", "POST", {"Event": "Hangup"}, event="Hangup")
    assert box.flush(5)
    [row] = box.deliveries("call-2")
    assert row["status"] == "failed" and row["attempts"] == 1 and "refused" in row["last_error"]
    assert receiver.requests == []


def test_a_media_download_connects_to_the_address_it_checked(dns, receiver, tmp_path):
    name = _rebinding(dns)
    media = MediaCache(tmp_path / "media", allow_private=False, connect_timeout=1, read_timeout=2)
    with pytest.raises(MediaError, match="refused"):
        media.local_file(f"http://{name}:{receiver.port}/prompt.wav")
    assert receiver.requests == []


def test_a_stream_connects_to_the_address_it_checked(dns, relay, tmp_path):
    app = RawApp()
    name = _rebinding(dns)
    services = _services(tmp_path, allow_private=False)
    try:
        url = services.check_url(f"ws://{name}:{app.server.server_port}/app", ("ws", "wss"))  # LiveStream.start
        spec = StreamSpec(stream_id="s2", call_uuid="c2", url=url, connect_timeout=2,
                          resolve=services.connect_addresses)                                 # LiveStream._open
        with pytest.raises(StreamStartError, match="refused"):
            StreamSession(spec, relay, lambda cmd: "+OK", None).start()
        assert app.requests == [] and app.socks == [] and dns.count(name) == 2
    finally:
        app.stop()


def test_the_http_client_dials_the_address_resolve_gave_with_the_name_as_host(dns, receiver):
    dns.set("app.test", "127.0.0.2")    # what a second lookup would say: nothing listens there
    pool = new_pool(resolve=lambda host, port: checked_addresses("127.0.0.1", port, allow_private=True))
    response = send(pool, "GET", f"http://app.test:{receiver.port}/x", None, {}, (1, 2))
    release(response, False)
    assert response.status == 404 and receiver.requests[0].headers["host"] == f"app.test:{receiver.port}"
    assert dns.count("app.test") == 0


def test_the_http_client_keeps_the_name_for_tls(dns, tmp_path):
    seen = []
    server = _tls_server(tmp_path, seen)
    try:
        pool = new_pool(resolve=lambda host, port: checked_addresses("127.0.0.1", port, allow_private=True))
        with pytest.raises(RequestFailed, match="TLS error"):
            send(pool, "GET", f"https://app.test:{server.server_port}/x", None, {}, (1, 2))
        assert seen == ["app.test"]
    finally:
        server.stop(timeout=1)


def test_a_name_with_one_private_address_among_public_ones_is_refused(dns):
    dns.set("mixed.test", [PUBLIC, "10.0.0.7"])
    with pytest.raises(UrlError, match="refused") as info:
        clean_url("https://mixed.test/x", allow_private=False)
    assert "10.0.0.7" not in str(info.value)   # the Error field does not map the internal network
    with pytest.raises(UrlError, match="refused"):
        checked_addresses("mixed.test", 443)


# -- 4. public means globally reachable --------------------------------------------------------------

@pytest.mark.parametrize("address", [
    "100.64.0.1", "100.127.255.254",           # CGNAT (RFC 6598): not "private", not public either
    "224.0.0.1", "239.255.255.250", "255.255.255.255", "0.0.0.0", "0.1.2.3", "198.18.0.1", "192.0.2.1",
    "240.0.0.1", "127.9.9.9", "169.254.169.254", "10.0.0.1", "172.31.0.1", "192.168.1.1",
    "::1", "::", "fe80::1", "fd00::1", "fec0::1", "ff02::1", "2001:db8::1", "100::1",
    "2002:7f00:1::1", "2002:5db8:d822::1",      # 6to4 (deprecated): whatever IPv4 address it embeds
    "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::6440:1",   # NAT64 of 127.0.0.1, 10.0.0.1, 100.64.0.1
    "64:ff9b:1::1",                             # NAT64 local use
    "::ffff:127.0.0.1", "::ffff:100.64.0.1", "::127.0.0.1", "2001::1", "3fff::1",
])
def test_addresses_that_are_not_public_are_refused(dns, address):
    assert not is_public_address(address)
    literal = f"[{address}]" if ":" in address else address
    with pytest.raises(UrlError, match="refused"):
        clean_url(f"http://{literal}/x", allow_private=False)
    dns.set("host.test", address)
    with pytest.raises(UrlError, match="refused"):
        clean_url("http://host.test/x", allow_private=False)


@pytest.mark.parametrize("address", [PUBLIC, "8.8.8.8", "2606:4700::1111", "2001:4860:4860::8888",
                                     "::ffff:93.184.216.34", "64:ff9b::5db8:d822"])
def test_public_addresses_pass(dns, address):
    assert is_public_address(address)
    literal = f"[{address}]" if ":" in address else address
    assert clean_url(f"https://{literal}/x", allow_private=False) == f"https://{literal}/x"
    dns.set("public.test", address)
    assert clean_url("https://public.test/x", allow_private=False) == "https://public.test/x"


# -- helpers -----------------------------------------------------------------------------------------

def _services(tmp_path, allow_private):
    env = {"CALLFORK_SERVER_ALLOW_PRIVATE_URLS": "true" if allow_private else "false",
           "CALLFORK_SERVER_DATA_DIR": str(tmp_path / "data")}
    return VerbServices(Service(load_config(None, env=env)), None)


def _tls_server(tmp_path, seen):
    """A TLS server on loopback with a self-signed certificate that records the SNI it is offered."""
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=app.test"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.sni_callback = lambda sock, name, context: seen.append(name)
    server = StreamServer(("127.0.0.1", free_port()), lambda s, _: s.recv(1), ssl_context=ctx)
    server.start()
    return server
