"""The outbox's scheduling against real receivers and real SQLite files: when rows fall due is kept in
memory (at start, on retries), a webhook with nothing ahead of it goes out straight from `enqueue`,
and neither shortcut breaks per-call order or the concurrency bound."""
import collections
import sqlite3
import time

import gevent

from http_receiver import HttpReceiver, Reply
from outbox_support import db_path, outboxes  # noqa: F401 (fixtures)
from waiting import wait_until



def seq_of(req):
    return int(req.form['Seq'])


def test_restart_with_overdue_and_future_rows(db_path, outboxes):
    """Rows a previous process left: the overdue one goes at once, the future one when it falls due
    (from the due time read at start, not the scheduler's seconds-long idle recheck)."""
    dead = outboxes(db_path)
    dead.enqueue('overdue', 'http://127.0.0.1:9/x', 'POST', {'Seq': '1'})
    dead.enqueue('future', 'http://127.0.0.1:9/x', 'POST', {'Seq': '2'})
    dead.close()
    with HttpReceiver() as r:
        conn = sqlite3.connect(db_path)
        now = time.time()
        with conn:
            conn.execute("UPDATE outbox SET url=?, next_attempt_at=? WHERE call_uuid='overdue'", (r.url(), now - 60))
            conn.execute("UPDATE outbox SET url=?, next_attempt_at=? WHERE call_uuid='future'", (r.url(), now + 0.8))
        conn.close()
        box = outboxes(db_path)
        box.start()
        assert r.wait_for(lambda: len(r.answered(200)) == 1, 0.5)
        assert seq_of(r.answered(200)[0]) == 1
        assert r.wait_for(lambda: len(r.answered(200)) == 2, 2.5)   # idle recheck: 5 s
        assert r.answered(200)[1].received_at >= now + 0.75
        wait_until(lambda: box.depth() == 0, 2, 'both recorded as delivered')


def test_retry_goes_out_when_due(db_path, outboxes):
    def responder(req):
        return Reply(status=503) if len(r.requests) == 1 else Reply()
    with HttpReceiver(responder) as r:
        box = outboxes(db_path, retries=2, backoff_base_s=0.3, backoff_max_s=0.3)
        box.start()
        box.enqueue('c', r.url(), 'POST', {'Seq': '1'})
        # backoff is uniform(0, 0.3) s: the retry is woken by its due time, not the 5 s recheck
        wait_until(lambda: box.depth() == 0, 1.5, 'the retry delivered')
    (row,) = box.deliveries('c')
    assert row['status'] == 'delivered' and row['attempts'] == 2


def test_a_burst_of_enqueues_keeps_order_and_the_bound(db_path, outboxes):
    live = [0]
    most = [0]

    def responder(req):
        live[0] += 1
        most[0] = max(most[0], live[0])
        try:
            gevent.sleep(0.005)   # the server's delay: requests overlap, so the bound is tested
        finally:
            live[0] -= 1
        return Reply()

    with HttpReceiver(responder) as r:
        box = outboxes(db_path, concurrency=4)
        box.start()
        calls, per_call = 20, 10
        for seq in range(calls * per_call):   # no yield in between: one burst
            box.enqueue('call-%d' % (seq % calls), r.url(), 'POST', {'Seq': str(seq)})
        assert box.flush(20)
    got = [seq_of(q) for q in r.answered(200)]
    assert sorted(got) == list(range(calls * per_call))   # each once
    assert 1 < most[0] <= 4
    by_call = collections.defaultdict(list)
    for seq in got:
        by_call[seq % calls].append(seq)
    assert all(seqs == sorted(seqs) for seqs in by_call.values())


def test_a_webhook_waits_behind_its_calls_earlier_one(db_path, outboxes):
    with HttpReceiver(lambda req: Reply(hold=True, hold_status=200)) as r:
        box = outboxes(db_path)
        box.start()
        box.enqueue('c', r.url(), 'POST', {'Seq': '1'})
        assert r.wait_for(lambda: len(r.requests) == 1, 2)
        box.enqueue('c', r.url(), 'POST', {'Seq': '2'})
        box.enqueue('other', r.url(), 'POST', {'Seq': '3'})  # another call is not held up
        assert r.wait_for(lambda: len(r.requests) == 2, 2)
        assert [seq_of(q) for q in r.requests] == [1, 3]
        assert [d['status'] for d in box.deliveries('c')] == ['in_flight', 'pending']
        r.release()
        assert box.flush(5)
    assert [seq_of(q) for q in r.answered(200) if q.form['Seq'] != '3'] == [1, 2]


def test_rows_left_by_a_previous_process_stay_ahead_of_new_ones(db_path, outboxes):
    dead = outboxes(db_path)
    dead.enqueue('c', 'http://127.0.0.1:9/x', 'POST', {'Seq': '1'})
    dead.close()
    with HttpReceiver() as r:
        conn = sqlite3.connect(db_path)
        with conn:
            conn.execute('UPDATE outbox SET url=?, next_attempt_at=?', (r.url(), time.time() + 0.3))
        conn.close()
        box = outboxes(db_path)
        box.start()
        box.enqueue('c', r.url(), 'POST', {'Seq': '2'})  # the call's older row is not due yet
        assert not r.wait_for(lambda: len(r.requests) > 0, 0.2)
        assert r.wait_for(lambda: len(r.answered(200)) == 2, 3)
    assert [seq_of(q) for q in r.answered(200)] == [1, 2]


def test_retried_failures_stay_ahead_of_new_ones(db_path, outboxes):
    with HttpReceiver(lambda req: Reply(status=400) if req.form['Seq'] == '1' else Reply()) as r:
        box = outboxes(db_path, retries=0)
        box.start()
        box.enqueue('c', r.url(), 'POST', {'Seq': '1'})
        wait_until(lambda: box.deliveries('c')[0]['status'] == 'failed', 2, 'the first webhook failed')
        r.responder = lambda req: Reply(hold=True, hold_status=200)
        assert box.retry_failed('c') == 1
        box.enqueue('c', r.url(), 'POST', {'Seq': '2'})
        assert r.wait_for(lambda: len(r.requests) == 2, 2)
        assert not r.wait_for(lambda: len(r.requests) == 3, 0.2)   # 2 waits for the retried 1
        r.release()
        assert box.flush(5)
    assert [seq_of(q) for q in r.requests] == [1, 1, 2]
