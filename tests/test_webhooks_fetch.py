"""fetch_document against real HTTP receivers on loopback (the fallback URL is the interpreter's:
tests/test_scenario_vobiz_flow.py)."""
import socket
import time

import pytest

from http_receiver import HttpReceiver, Reply
from webhooks import FetchError, fetch_document, verify_v2, verify_v3
from webhooks.signing import signature_v1

TOKEN = 'TEST_TOKEN'
PARAMS = {'CallUUID': 'c-1', 'From': '14155550100', 'To': '14155550101', 'Event': 'StartApp',
          'Note': 'a b&c=d+é'}
XML = b'<Response><Speak>hi</Speak></Response>'


@pytest.fixture
def receiver():
    with HttpReceiver(lambda req: Reply(body=XML, content_type='application/xml')) as r:
        yield r


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_form_post_body_and_headers(receiver):
    url = receiver.url('/answer?app=1#ct=2000')
    result = fetch_document(url, 'POST', PARAMS, auth_token=TOKEN)
    assert result.status == 200 and result.body == XML and result.content_type == 'application/xml'
    (req,) = receiver.requests
    assert req.method == 'POST' and req.path == '/answer' and req.query == 'app=1'
    assert req.headers['content-type'] == 'application/x-www-form-urlencoded'
    assert req.form == PARAMS
    assert req.headers['user-agent'].startswith('callfork/')
    clean = receiver.url('/answer?app=1')
    assert verify_v2(clean, req.headers['x-vobiz-signature-v2-nonce'], req.headers['x-vobiz-signature-v2'], TOKEN)
    assert verify_v3(clean, req.headers['x-vobiz-signature-v3-nonce'], req.headers['x-vobiz-signature-v3'], TOKEN)
    assert req.headers['x-vobiz-signature-v2-nonce'] != req.headers['x-vobiz-signature-v3-nonce']
    assert req.headers['x-vobiz-signature'] == signature_v1(clean, req.form_pairs, TOKEN)
    assert req.headers['x-vobiz-signature-ma-v2'] == req.headers['x-vobiz-signature-v2']


def test_get_puts_params_in_query(receiver):
    result = fetch_document(receiver.url('/answer?app=1'), 'get', PARAMS, auth_token=TOKEN, user_agent='ua/1')
    assert result.status == 200
    (req,) = receiver.requests
    assert req.method == 'GET' and req.body == b''
    args = req.args
    assert args.pop('app') == '1'
    assert args == PARAMS
    assert req.headers['user-agent'] == 'ua/1'
    full = receiver.url('/answer?' + req.query)
    assert req.headers['x-vobiz-signature'] == signature_v1(full, None, TOKEN)


def test_read_timeout_is_unreachable():
    with HttpReceiver(lambda req: Reply(body=XML, delay=2.0)) as slow:
        started = time.monotonic()
        with pytest.raises(FetchError) as info:
            fetch_document(slow.url(), 'POST', PARAMS, auth_token=TOKEN, connect_timeout=1, read_timeout=0.3)
        assert time.monotonic() - started < 1.5
    assert info.value.kind == 'unreachable'
    assert 'timeout' in info.value.message


def test_trickling_body_hits_total_timeout():
    # answers at once, then sends a small chunk every 0.1 s: each read is within read_timeout, but the
    # whole body would take 2 s
    reply = Reply(stream_bytes=20 * 100, chunk_size=100, chunk_delay=0.1)
    with HttpReceiver(lambda req: reply) as slow:
        started = time.monotonic()
        with pytest.raises(FetchError) as info:
            fetch_document(slow.url(), 'POST', PARAMS, auth_token=TOKEN, read_timeout=1, total_timeout=0.5)
        assert time.monotonic() - started < 1.5
    assert info.value.kind == 'unreachable' and 'within' in info.value.message


def test_refused_port_is_unreachable():
    with pytest.raises(FetchError) as info:
        fetch_document('http://127.0.0.1:%d/answer' % free_port(), 'POST', PARAMS, auth_token=TOKEN)
    assert info.value.kind == 'unreachable' and 'refused' in info.value.message


def test_dns_failure_is_unreachable():
    with pytest.raises(FetchError) as info:
        fetch_document('http://no-such-host.invalid/answer', 'POST', PARAMS, auth_token=TOKEN, connect_timeout=2)
    assert info.value.kind == 'unreachable'


def test_http_500_is_http_status():
    with HttpReceiver(lambda req: Reply(status=500, body=b'boom')) as r:
        with pytest.raises(FetchError) as info:
            fetch_document(r.url(), 'POST', PARAMS, auth_token=TOKEN)
    assert info.value.kind == 'http_status' and info.value.status == 500


def test_10mb_body_is_too_large_without_reading_it_all():
    total = 10 * 1024 * 1024
    with HttpReceiver(lambda req: Reply(stream_bytes=total)) as r:
        with pytest.raises(FetchError) as info:
            fetch_document(r.url(), 'POST', PARAMS, auth_token=TOKEN)
        assert info.value.kind == 'too_large'
        # the client stopped reading: the server could not push the whole body (it is bounded by
        # the limit plus what the loopback socket buffers hold)
        r.wait_for(lambda: r.requests[0].answered_status is not None, 2)
    assert r.bytes_streamed < total


def test_declared_content_length_over_limit_is_too_large():
    with HttpReceiver(lambda req: Reply(stream_bytes=10 * 1024 * 1024, declared_length=True)) as r:
        with pytest.raises(FetchError) as info:
            fetch_document(r.url(), 'POST', PARAMS, auth_token=TOKEN)
    assert info.value.kind == 'too_large'


def test_body_at_the_limit_is_fine():
    with HttpReceiver(lambda req: Reply(body=b'y' * 1000)) as r:
        assert fetch_document(r.url(), 'POST', {}, auth_token=TOKEN, max_bytes=1000).body == b'y' * 1000
        with pytest.raises(FetchError) as info:
            fetch_document(r.url(), 'POST', {}, auth_token=TOKEN, max_bytes=999)
    assert info.value.kind == 'too_large'


@pytest.mark.parametrize('url', ['ftp://x/y', 'not a url', ''])
def test_bad_url(url):
    with pytest.raises(FetchError) as info:
        fetch_document(url, 'POST', PARAMS, auth_token=TOKEN)
    assert info.value.kind == 'bad_url'


def test_private_target_refused_when_configured(receiver):
    with pytest.raises(FetchError) as info:
        fetch_document(receiver.url(), 'POST', PARAMS, auth_token=TOKEN, allow_private=False)
    assert info.value.kind == 'bad_url'
    assert receiver.requests == []


def test_redirect_followed_and_resigned(receiver):
    def responder(req):
        return Reply(status=302, headers={'Location': receiver.url('/next')})
    with HttpReceiver(responder) as first:
        result = fetch_document(first.url('/start'), 'POST', PARAMS, auth_token=TOKEN)
    assert result.body == XML and result.url == receiver.url('/next')
    (req,) = receiver.requests
    assert req.method == 'GET'  # 302 after POST becomes GET, like browsers
    assert verify_v2(receiver.url('/next'), req.headers['x-vobiz-signature-v2-nonce'],
                     req.headers['x-vobiz-signature-v2'], TOKEN)


def test_gzip_body_is_decoded_and_limited_after_decoding():
    import gzip
    small, bomb = gzip.compress(XML), gzip.compress(b'0' * (5 * 1024 * 1024))
    assert len(bomb) < 100 * 1024  # the compressed size alone would pass the limit
    with HttpReceiver(lambda req: Reply(body=small if req.path == '/small' else bomb,
                                        headers={'Content-Encoding': 'gzip'})) as r:
        assert fetch_document(r.url('/small'), 'POST', PARAMS, auth_token=TOKEN).body == XML
        with pytest.raises(FetchError) as info:
            fetch_document(r.url('/bomb'), 'POST', PARAMS, auth_token=TOKEN)
    assert info.value.kind == 'too_large'
