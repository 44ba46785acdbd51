"""The durable outbox against real HTTP receivers and real SQLite files: outages, retries, ordering,
slow receivers, wake-up on enqueue, and survival of a kill -9."""
import collections
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gevent
import pytest

from http_receiver import HttpReceiver, Reply
from outbox_support import TOKEN, db_path, outboxes  # noqa: F401 (fixtures)
from webhooks import Outbox, verify_v2, verify_v3
from webhooks.signing import signature_v1

REPO = Path(__file__).resolve().parent.parent


def key_of(req):
    return req.headers['x-callfork-idempotency-key']


def test_form_post_carries_signed_headers_and_key(db_path, outboxes):
    with HttpReceiver() as r:
        box = outboxes(db_path)
        params = {'CallUUID': 'call-1', 'Event': 'Hangup', 'HangupCause': 'NORMAL_CLEARING', 'X': 'a b&c'}
        delivery_id = box.enqueue('call-1', r.url('/hangup?k=v#frag'), 'POST', params, event='Hangup')
        box.start()
        assert box.flush(5)
        (req,) = r.requests
    assert req.method == 'POST' and req.path == '/hangup' and req.query == 'k=v'
    assert req.form == params
    assert req.headers['content-type'] == 'application/x-www-form-urlencoded'
    assert req.headers['user-agent'].startswith('callfork/')
    assert req.headers['x-callfork-event'] == 'Hangup'
    (row,) = box.deliveries('call-1')
    assert row['id'] == delivery_id and row['status'] == 'delivered' and row['attempts'] == 1
    assert row['last_status_code'] == 200 and row['last_error'] is None and row['event'] == 'Hangup'
    assert key_of(req) == row['idempotency_key']
    url = r.url('/hangup?k=v')
    assert row['url'] == url
    assert verify_v2(url, req.headers['x-vobiz-signature-v2-nonce'], req.headers['x-vobiz-signature-v2'], TOKEN)
    assert verify_v3(url, req.headers['x-vobiz-signature-v3-nonce'], req.headers['x-vobiz-signature-v3'], TOKEN)
    assert req.headers['x-vobiz-signature'] == signature_v1(url, req.form_pairs, TOKEN)
    assert box.delivered_count() == 1 and box.depth() == 0 and box.failed_count() == 0


def test_get_in_query_and_json_body(db_path, outboxes):
    with HttpReceiver() as r:
        box = outboxes(db_path)
        box.start()
        box.enqueue('c', r.url('/get'), 'GET', {'Event': 'StartStream', 'StreamID': 's1'}, event='StartStream')
        payload = {'event_type': 'calling.call.stream', 'timestamp': 1.5,
                   'params': {'control_id': 'x', 'state': 'streaming', 'url': 'wss://e/x'}}
        box.enqueue('c', r.url('/json'), 'POST', payload, encoding='json', event='calling.call.stream')
        box.enqueue('c', r.url('/jsonget'), 'GET', payload, encoding='json')
        assert box.flush(5)
    get, post, jsonget = r.requests
    assert get.method == 'GET' and get.args == {'Event': 'StartStream', 'StreamID': 's1'} and get.body == b''
    assert post.headers['content-type'] == 'application/json' and json.loads(post.body) == payload
    assert post.headers['x-callfork-event'] == 'calling.call.stream'
    assert jsonget.args == {'event_type': 'calling.call.stream', 'timestamp': '1.5', 'params.control_id': 'x',
                            'params.state': 'streaming', 'params.url': 'wss://e/x'}
    assert 'x-callfork-event' not in jsonget.headers


def test_receiver_outage_then_back_delivers_everything_exactly_once(db_path, outboxes):
    r = HttpReceiver().start()
    url = r.url('/cb')
    r.stop()  # down: connections refused
    box = outboxes(db_path, retries=1000)
    box.start()
    calls = ['call-%d' % i for i in range(5)]
    for seq in range(30):
        box.enqueue(calls[seq % 5], url, 'POST', {'Seq': str(seq)}, event='E')
    # wait until the outbox has retried against the dead port
    deadline = time.monotonic() + 5
    while not any(d['attempts'] >= 3 for d in box.deliveries('call-0')):
        assert time.monotonic() < deadline, 'no retries seen'
        box.wait_progress(0.5)
    assert r.requests == []
    r.start()
    try:
        assert box.flush(10)
    finally:
        r.stop()
    keys = [d['idempotency_key'] for c in calls for d in box.deliveries(c)]
    assert len(keys) == 30
    answered = collections.Counter(key_of(q) for q in r.answered(200))
    assert set(answered) == set(keys) and set(answered.values()) == {1}
    # per-call order: the receiver saw each call's events in enqueue order
    for call in calls:
        seqs = [int(q.form['Seq']) for q in r.requests if int(q.form['Seq']) % 5 == calls.index(call)]
        assert seqs == sorted(seqs)
    assert box.delivered_count() == 30 and box.failed_count() == 0


def test_per_call_order_under_retries(db_path, outboxes):
    attempts = collections.Counter()

    def flaky(req):  # every event fails twice (503, 500) before it is accepted
        key = key_of(req)
        attempts[key] += 1
        return Reply(status={1: 503, 2: 500}.get(attempts[key], 200))
    with HttpReceiver(flaky) as r:
        box = outboxes(db_path, retries=5)
        box.start()
        for seq in range(8):
            box.enqueue('call-A' if seq % 2 == 0 else 'call-B', r.url(), 'POST', {'Seq': str(seq)})
        assert box.flush(10)
    for call, parity in (('call-A', 0), ('call-B', 1)):
        seen = [int(q.form['Seq']) for q in r.requests if int(q.form['Seq']) % 2 == parity]
        expected = [s for s in range(8) if s % 2 == parity]
        # each event three times, and never one before the previous was accepted
        assert seen == [s for s in expected for _ in range(3)]
        assert [d['attempts'] for d in box.deliveries(call)] == [3, 3, 3, 3]
        assert {d['status'] for d in box.deliveries(call)} == {'delivered'}


def test_slow_receiver_for_one_call_does_not_delay_another(db_path, outboxes):
    def responder(req):
        return Reply(delay=2.0) if req.path == '/slow' else Reply()
    with HttpReceiver(responder) as r:
        box = outboxes(db_path)
        box.start()
        box.enqueue('call-A', r.url('/slow'), 'POST', {'n': '1'})
        box.enqueue('call-A', r.url('/fast'), 'POST', {'n': '2'})  # waits for call A's first
        assert r.wait_for(lambda: len(r.requests) == 1, 2)
        started = time.monotonic()
        box.enqueue('call-B', r.url('/fast'), 'POST', {'n': '3'})
        assert r.wait_for(lambda: any(q.form['n'] == '3' and q.answered_status == 200 for q in r.requests), 1.5)
        b_latency = time.monotonic() - started
        assert [q.form['n'] for q in r.requests] == ['1', '3']  # A's second is held behind its first
        assert box.flush(5)
    assert b_latency < 1.0
    assert [q.form['n'] for q in r.requests] == ['1', '3', '2']


@pytest.mark.parametrize('status', [500, 502, 503, 408, 429])
def test_retryable_statuses_are_retried_then_failed_and_kept(db_path, outboxes, status):
    with HttpReceiver(lambda req: Reply(status=status)) as r:
        box = outboxes(db_path, retries=2)
        box.start()
        box.enqueue('call-1', r.url(), 'POST', {'a': '1'}, event='E')
        assert box.flush(5)
    assert len(r.requests) == 3
    assert len({key_of(q) for q in r.requests}) == 1  # the same key on every retry
    assert len({q.headers['x-vobiz-signature-v2-nonce'] for q in r.requests}) == 3  # signed afresh
    (row,) = box.deliveries('call-1')
    assert row['status'] == 'failed' and row['attempts'] == 3 and row['last_status_code'] == status
    assert box.failed_count() == 1 and box.depth() == 0


@pytest.mark.parametrize('status', [400, 403, 404, 410, 301])
def test_other_answers_fail_at_once(db_path, outboxes, status):
    headers = {'Location': '/elsewhere'} if status == 301 else {}
    with HttpReceiver(lambda req: Reply(status=status, headers=headers)) as r:
        box = outboxes(db_path, retries=5)
        box.start()
        box.enqueue('call-1', r.url(), 'POST', {'a': '1'})
        box.enqueue('call-1', r.url('/next'), 'POST', {'a': '2'})  # not blocked by the failed one
        assert box.flush(5)
    assert [q.path for q in r.requests] == ['/hook', '/next']
    first, second = box.deliveries('call-1')
    assert first['status'] == second['status'] == 'failed'
    assert first['attempts'] == 1 and first['last_status_code'] == status


def test_retry_after_is_honoured(db_path, outboxes):
    def responder(req):
        return Reply(status=429, headers={'Retry-After': '0.4'}) if len(r.requests) == 1 else Reply()
    with HttpReceiver(responder) as r:
        box = outboxes(db_path, retries=2, backoff_max_s=1.0)
        box.start()
        box.enqueue('c', r.url(), 'POST', {})
        assert box.flush(5)
    assert r.requests[1].received_at - r.requests[0].received_at >= 0.35


def test_timeout_is_retried(db_path, outboxes):
    def responder(req):
        return Reply(delay=1.0) if len(r.requests) == 1 else Reply()
    with HttpReceiver(responder) as r:
        box = outboxes(db_path, read_timeout_s=0.2, retries=2)
        box.start()
        box.enqueue('c', r.url(), 'POST', {})
        assert box.flush(5)
    (row,) = box.deliveries('c')
    assert row['status'] == 'delivered' and row['attempts'] == 2
    assert len({key_of(q) for q in r.requests}) == 1


def test_enqueue_wakes_the_idle_worker(db_path, outboxes):
    with HttpReceiver() as r:
        box = outboxes(db_path)
        box.start()
        box.enqueue('c', r.url(), 'POST', {'n': '1'})
        assert box.flush(5)
        # the worker is now idle (its recheck interval is seconds); a new event goes out at once
        started = time.monotonic()
        box.enqueue('c', r.url(), 'POST', {'n': '2'})
        assert r.wait_for(lambda: len(r.answered(200)) == 2, 2)
        assert time.monotonic() - started < 0.5


def test_bad_url_and_method_are_kept_as_failed(db_path, outboxes):
    box = outboxes(db_path)
    box.enqueue('c', 'ftp://example.com/x', 'POST', {'a': '1'}, event='E')
    box.enqueue('c', 'http://127.0.0.1:1/x', 'DELETE', {'a': '1'})
    box.enqueue('c', None, 'POST', None)
    rows = box.deliveries('c')
    assert [r['status'] for r in rows] == ['failed'] * 3
    assert 'scheme' in rows[0]['last_error'] and 'method' in rows[1]['last_error']
    assert box.failed_count() == 3 and box.depth() == 0
    with pytest.raises(ValueError):
        box.enqueue('c', 'http://x/', 'POST', {}, encoding='xml')


def test_private_targets_refused_when_configured(db_path, outboxes):
    box = outboxes(db_path, allow_private=False)
    box.enqueue('c', 'http://127.0.0.1:8080/x', 'POST', {})
    (row,) = box.deliveries('c')
    assert row['status'] == 'failed' and 'not allowed' in row['last_error']


def test_concurrency_is_bounded(db_path, outboxes):
    with HttpReceiver(lambda req: Reply(hold=True, hold_status=200)) as r:
        box = outboxes(db_path, concurrency=3)
        box.start()
        for i in range(6):
            box.enqueue('call-%d' % i, r.url(), 'POST', {'i': str(i)})
        assert r.wait_for(lambda: len(r.requests) == 3, 2)
        assert not r.wait_for(lambda: len(r.requests) > 3, 0.3)
        r.release()
        assert box.flush(5)
    assert len(r.answered(200)) == 6


def test_stop_requeues_in_flight_and_restart_delivers(db_path, outboxes):
    with HttpReceiver(lambda req: Reply(hold=True)) as r:
        box = outboxes(db_path)
        box.start()
        box.enqueue('c', r.url(), 'POST', {'n': '1'})
        assert r.wait_for(lambda: len(r.requests) == 1, 2)
        assert box.deliveries('c')[0]['status'] == 'in_flight'
        box.stop(timeout=0.2)
        (row,) = box.deliveries('c')
        assert row['status'] == 'pending' and row['attempts'] == 0
        r.responder = lambda req: Reply()
        r.release()
        again = outboxes(db_path)
        again.start()
        assert again.flush(5)
    assert again.deliveries('c')[0]['status'] == 'delivered'


def test_rows_survive_reopening_before_start(db_path, outboxes):
    box = outboxes(db_path)
    ids = [box.enqueue('c', 'http://127.0.0.1:9/x', 'POST', {'n': str(i)}) for i in range(3)]
    box.close()
    conn = sqlite3.connect(db_path)
    assert conn.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'
    rows = conn.execute('SELECT id, status, body FROM outbox ORDER BY id').fetchall()
    assert [r[0] for r in rows] == ids and {r[1] for r in rows} == {'pending'}
    assert json.loads(rows[2][2]) == [['n', '2']]


CHILD = textwrap.dedent('''
    from gevent import monkey; monkey.patch_all()
    import gevent.event
    import sys, gevent
    from webhooks import Outbox
    db, down_url, hang_url, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    box = Outbox(db, auth_token='OUTBOX_TOKEN', retries=1000, backoff_base_s=0.01, backoff_max_s=0.05,
                 connect_timeout_s=1, read_timeout_s=30)
    box.start()
    for seq in range(count):
        url = down_url if seq % 4 < 2 else hang_url
        box.enqueue('call-%d' % (seq % 4), url, 'POST', {'Seq': str(seq)}, event='E')
    print('ENQUEUED', flush=True)
    gevent.event.Event().wait(60)   # deliver until killed
''')


def test_kill_9_survival(db_path, outboxes):
    count = 20
    down = HttpReceiver().start()
    down_url = down.url('/down')
    down.stop()
    hang = HttpReceiver(lambda req: Reply(hold=True)).start()
    try:
        child = subprocess.Popen([sys.executable, '-c', CHILD, db_path, down_url, hang.url('/hang'), str(count)],
                                 cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=dict(os.environ, PYTHONPATH=str(REPO)))
        try:
            with gevent.Timeout(20):
                line = child.stdout.readline()
            assert line.strip() == b'ENQUEUED', child.stderr.read()
            # calls 2 and 3 each have a request hanging at the receiver: those rows are in_flight
            assert hang.wait_for(lambda: len(hang.requests) == 2, 10)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        assert child.returncode == -signal.SIGKILL

        box = outboxes(db_path)  # not started yet: look at what the dead process left
        left = {c: box.deliveries('call-%d' % c) for c in range(4)}
        assert sum(len(v) for v in left.values()) == count
        assert [d['status'] for d in left[2]][0] == 'in_flight'
        assert [d['status'] for d in left[3]][0] == 'in_flight'
        assert any(d['attempts'] >= 1 for d in left[0])  # it was retrying against the dead port

        down.start()
        hang.responder = lambda req: Reply()
        hang.release()  # the orphaned requests answer 503 to a dead client
        box.start()
        assert box.flush(10)
    finally:
        down.stop()
        hang.stop()
    keys = {d['idempotency_key'] for c in range(4) for d in box.deliveries('call-%d' % c)}
    answered = collections.Counter(key_of(q) for q in down.answered(200) + hang.answered(200))
    assert set(answered) == keys and set(answered.values()) == {1}
    got = sorted(int(q.form['Seq']) for q in down.answered(200) + hang.answered(200))
    assert got == list(range(count))
    for receiver in (down, hang):  # per-call order held across the restart
        for call in range(4):
            seqs = [int(q.form['Seq']) for q in receiver.answered(200) if int(q.form['Seq']) % 4 == call]
            assert seqs == sorted(seqs)


def test_odd_event_names_still_deliver(db_path, outboxes):
    with HttpReceiver() as r:
        box = outboxes(db_path)
        box.start()
        box.enqueue('c', r.url(), 'POST', {'a': 'é'}, event='Stop\r\nX-Injected: 1 é')
        assert box.flush(5)
    (req,) = r.requests
    assert 'x-injected' not in req.headers
    assert req.headers['x-callfork-event'].startswith('Stop')
    assert req.form == {'a': 'é'}
    assert box.deliveries('c')[0]['event'] == 'Stop\r\nX-Injected: 1 é'  # stored as given


def test_prune_removes_only_old_delivered_rows(db_path, outboxes):
    with HttpReceiver(lambda req: Reply(status=200 if req.path == '/ok' else 404)) as r:
        box = outboxes(db_path)
        box.start()
        box.enqueue('c', r.url('/ok'), 'POST', {})
        box.enqueue('c', r.url('/gone'), 'POST', {})
        assert box.flush(5)
    assert box.prune(3600) == 0
    assert box.prune(-1) == 1
    assert [d['status'] for d in box.deliveries('c')] == ['failed']
