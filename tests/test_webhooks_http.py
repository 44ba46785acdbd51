"""The HTTP client under fetches and webhooks (urllib3 pools, webhooks/http_client.py), against real
receivers on loopback: the fetch pool holds a burst of concurrent fetches without discarding
connections, no cookies, no proxies from the environment, TLS verified, the same Accept-Encoding as
before, and the error descriptions."""
import logging
import socket
import subprocess

import gevent
import pytest
from gevent.pywsgi import WSGIServer

from http_receiver import HttpReceiver, Reply
from webhooks import FetchError, Outbox, fetch_document

TOKEN = 'TEST_TOKEN'
XML = b'<Response><Speak>hi</Speak></Response>'


def post_webhook(url, params):
    """One webhook through a real outbox (in-memory database), delivered."""
    box = Outbox(':memory:', auth_token=TOKEN)
    try:
        box.start()
        box.enqueue('c', url, 'POST', params, event='Hangup')
        assert box.flush(5)
    finally:
        box.close()


def test_a_burst_of_slow_fetches_keeps_every_connection(caplog):
    """More fetches in flight than the old pool of 32: all answer, and urllib3 discards nothing."""
    with HttpReceiver(lambda req: Reply(body=XML, delay=0.3)) as r:
        caplog.set_level(logging.WARNING, logger='urllib3.connectionpool')
        for _burst in range(2):
            jobs = [gevent.spawn(fetch_document, r.url('/answer'), 'POST', {'n': str(i)}, auth_token=TOKEN)
                    for i in range(80)]
            gevent.joinall(jobs, timeout=20, raise_error=True)
            assert all(job.value.status == 200 for job in jobs)
    assert len(r.requests) == 160
    assert not [rec for rec in caplog.records if 'pool is full' in rec.getMessage()]


def test_cookies_are_not_kept_between_fetches():
    reply = Reply(body=XML, headers={'Set-Cookie': 'session=abc; Path=/'})
    with HttpReceiver(lambda req: reply) as r:
        fetch_document(r.url('/a'), 'POST', {}, auth_token=TOKEN)
        fetch_document(r.url('/b'), 'POST', {}, auth_token=TOKEN)
        post_webhook(r.url('/hook'), {})
    assert len(r.requests) == 3
    assert not [q for q in r.requests if 'cookie' in q.headers]


def test_proxy_environment_is_ignored(monkeypatch):
    monkeypatch.setenv('HTTP_PROXY', 'http://127.0.0.1:9')
    monkeypatch.setenv('http_proxy', 'http://127.0.0.1:9')
    monkeypatch.setenv('NO_PROXY', '')
    with HttpReceiver(lambda req: Reply(body=XML)) as r:
        assert fetch_document(r.url(), 'POST', {}, auth_token=TOKEN).body == XML
        post_webhook(r.url('/hook'), {})
    assert len(r.requests) == 2


def test_request_headers_are_what_requests_sent():
    with HttpReceiver(lambda req: Reply(body=XML)) as r:
        fetch_document(r.url(), 'POST', {'a': '1'}, auth_token=TOKEN)
        post_webhook(r.url('/hook'), {'a': '1'})
    for req in r.requests:
        assert req.headers['accept'] == '*/*'
        assert 'gzip' in req.headers['accept-encoding'] and 'deflate' in req.headers['accept-encoding']
        assert req.headers['user-agent'].startswith('callfork/')
        assert req.form == {'a': '1'}


@pytest.fixture
def self_signed_https(tmp_path):
    """An HTTPS server with a self-signed certificate (no CA anybody trusts)."""
    key, cert = tmp_path / 'key.pem', tmp_path / 'cert.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', str(key), '-out', str(cert),
                    '-days', '1', '-subj', '/CN=127.0.0.1'], check=True, capture_output=True)
    seen = []

    def app(environ, start_response):
        seen.append(environ['PATH_INFO'])
        start_response('200 OK', [('Content-Type', 'application/xml')])
        return [XML]
    server = WSGIServer(('127.0.0.1', 0), app, keyfile=str(key), certfile=str(cert), log=None, error_log=None)
    server.start()
    yield 'https://127.0.0.1:%d/answer' % server.server_port, seen
    server.stop()


def test_tls_certificates_are_verified(self_signed_https):
    url, seen = self_signed_https
    with pytest.raises(FetchError) as info:
        fetch_document(url, 'POST', {}, auth_token=TOKEN)
    assert info.value.kind == 'unreachable' and 'TLS error' in info.value.message
    assert seen == []   # nothing was sent over the unverified connection


def test_error_descriptions():
    with pytest.raises(FetchError) as info:
        fetch_document('http://no-such-host.invalid/answer', 'POST', {}, auth_token=TOKEN, connect_timeout=2)
    assert 'DNS lookup failed' in info.value.message
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(FetchError) as info:
        fetch_document('http://127.0.0.1:%d/' % port, 'POST', {}, auth_token=TOKEN)
    assert info.value.message.endswith(': connection refused')
    with HttpReceiver(lambda req: Reply(delay=1.0)) as slow:
        with pytest.raises(FetchError) as info:
            fetch_document(slow.url(), 'POST', {}, auth_token=TOKEN, read_timeout=0.2)
    assert info.value.message.endswith(': read timeout')
