"""The outbox through long outages, against real HTTP receivers and real SQLite files: retries for a
window instead of a count (or Vobiz's count), a webhook that ran out of retries holds its call's
later ones until it is retried or released, Retry-After in both forms, per-host limits and pauses so
one dead receiver neither takes every slot nor gets a stream of attempts, delivered rows pruned, and
a database that refuses writes (SQLite's own size cap, or another writer holding the file): the
webhooks are kept in memory, bounded, then stored and delivered once each."""
import collections
import email.utils
import sqlite3
import time

import pytest

from http_receiver import HttpReceiver, Reply
from outbox_support import db_path, outboxes  # noqa: F401 (fixtures)
from sqlite_filler import fill, unfill
from waiting import wait_until
from webhooks import OutboxError


def key_of(req):
    return req.headers['x-callfork-idempotency-key']


def seq_of(req):
    return int(req.form['Seq'])


def counts(box):
    stats = box.stats()
    return stats['depth'], stats['held'], stats['failed'], stats['failed_by_host']


def assert_counts_as_stored(box, db_path, outboxes):
    """The counts the outbox keeps up to date are those a fresh look at the table finds."""
    assert counts(box) == counts(outboxes(db_path))


def test_retries_go_on_past_three_by_default(db_path, outboxes):
    tries = collections.Counter()

    def responder(req):
        tries[key_of(req)] += 1
        return Reply(status=503 if tries[key_of(req)] <= 6 else 200)
    with HttpReceiver(responder) as r:
        box = outboxes(db_path)          # no retries count: the retry window decides
        box.start()
        box.enqueue('c', r.url(), 'POST', {'Seq': '1'}, event='Hangup')
        assert box.flush(10)
    (row,) = box.deliveries('c')
    assert row['status'] == 'delivered' and row['attempts'] == 7
    assert len({key_of(q) for q in r.requests}) == 1


def test_vobiz_count_gives_up_after_its_retries_with_the_reason(db_path, outboxes):
    with HttpReceiver(lambda req: Reply(status=503)) as r:
        box = outboxes(db_path, retries=3, retry_window_s=None)
        box.start()
        box.enqueue('c', r.url(), 'POST', {'Seq': '1'})
        assert box.flush(10)
    assert len(r.requests) == 4
    (row,) = box.deliveries('c')
    assert row['status'] == 'failed' and row['last_error'] == 'gave up after 4 attempt(s): HTTP 503'


def test_a_webhook_that_ran_out_of_retries_holds_its_calls_later_ones(db_path, outboxes):
    up = {'start': False}

    def responder(req):
        return Reply(status=200 if req.path != '/start' or up['start'] else 503)
    with HttpReceiver(responder) as r:
        box = outboxes(db_path, retries=1, retry_window_s=None)
        box.start()
        box.enqueue('c', r.url('/start'), 'POST', {'Seq': '1'}, event='StartStream')
        box.enqueue('c', r.url('/later'), 'POST', {'Seq': '2'}, event='PlayedStream')
        box.enqueue('other', r.url('/later'), 'POST', {'Seq': '9'}, event='Hangup')
        assert box.flush(10)
        box.enqueue('c', r.url('/later'), 'POST', {'Seq': '3'}, event='Hangup')   # after the failure
        first, second, third = box.deliveries('c')
        assert first['status'] == 'failed' and first['last_error'] == 'gave up after 2 attempt(s): HTTP 503'
        assert second['status'] == third['status'] == 'held'
        assert 'webhook #%d of this call failed' % first['id'] in second['last_error']
        assert [seq_of(q) for q in r.requests if seq_of(q) != 9] == [1, 1]   # nothing of c overtook it
        assert box.held_count() == 2 and box.depth() == 0
        assert_counts_as_stored(box, db_path, outboxes)
        listed = box.webhooks()
        assert [(w['event'], w['status']) for w in listed] == [
            ('StartStream', 'failed'), ('PlayedStream', 'held'), ('Hangup', 'held')]

        up['start'] = True
        assert box.retry_failed('c') == 1
        assert box.flush(10)
    assert [seq_of(q) for q in r.answered(200)] == [9, 1, 2, 3]   # c's, in order, after the retry
    assert [d['status'] for d in box.deliveries('c')] == ['delivered'] * 3
    assert key_of(r.answered(200)[1]) == first['idempotency_key']
    assert counts(box) == (0, 0, 0, {})
    assert_counts_as_stored(box, db_path, outboxes)


def test_a_refused_webhook_holds_nothing_and_release_sends_held_ones(db_path, outboxes):
    def responder(req):
        return Reply(status={'/gone': 404, '/down': 503}.get(req.path, 200))
    with HttpReceiver(responder) as r:
        box = outboxes(db_path, retries=0, retry_window_s=None)
        box.start()
        box.enqueue('a', r.url('/gone'), 'POST', {'Seq': '1'})    # the receiver saw it and refused it
        box.enqueue('a', r.url('/ok'), 'POST', {'Seq': '2'})
        box.enqueue('b', r.url('/down'), 'POST', {'Seq': '3'})    # never accepted: holds b's next
        box.enqueue('b', r.url('/ok'), 'POST', {'Seq': '4'})
        assert box.flush(5)
        assert [d['status'] for d in box.deliveries('a')] == ['failed', 'delivered']
        assert [d['status'] for d in box.deliveries('b')] == ['failed', 'held']
        assert box.release_held('b') == 1
        assert box.flush(5)
    assert [d['status'] for d in box.deliveries('b')] == ['failed', 'delivered']
    assert box.retry_failed('b') == 1 and box.held_count() == 0   # the released one holds nothing now
    assert_counts_as_stored(box, db_path, outboxes)


def test_a_window_ends_even_for_webhooks_a_down_host_never_got(db_path, outboxes):
    r = HttpReceiver().start()
    url = r.url()
    r.stop()
    # one delivery at a time to the host, and a long pause once it failed: the second call's
    # webhook is never attempted before the window ends
    box = outboxes(db_path, retry_window_s=0.5, per_host_concurrency=1, backoff_base_s=30, backoff_max_s=30)
    box.start()
    box.enqueue('a', url, 'POST', {'Seq': '1'})
    box.enqueue('b', url, 'POST', {'Seq': '2'})
    box.enqueue('b', url, 'POST', {'Seq': '3'})
    wait_until(lambda: box.failed_count() == 2, 5, 'both heads failed when their window ended')
    a, = box.deliveries('a')
    b1, b2 = box.deliveries('b')
    assert a['attempts'] == 1 and 'connection refused' in a['last_error']
    assert b1['attempts'] == 0 and 'retry window' in b1['last_error'] and 'receiver was down' in b1['last_error']
    assert b2['status'] == 'held'
    stats = box.stats()
    assert stats['failed_by_host'] == {'127.0.0.1:%d' % r.port: 2} and stats['held'] == 1
    assert_counts_as_stored(box, db_path, outboxes)


def test_retry_after_seconds_and_http_date_are_honoured_beyond_the_backoff(db_path, outboxes):
    def responder(req):
        if len(r.requests) == 1:
            return Reply(status=429, headers={'Retry-After': '1'})
        if len(r.requests) == 2:
            return Reply(status=503, headers={'Retry-After': email.utils.formatdate(time.time() + 2, usegmt=True)})
        return Reply()
    with HttpReceiver(responder) as r:
        box = outboxes(db_path)            # backoff at most 0.05 s
        box.start()
        box.enqueue('c', r.url(), 'POST', {})
        assert box.flush(10)
    first, second, third = (q.received_at for q in r.requests)
    assert second - first >= 0.95
    assert third - second >= 0.95          # the date is whole seconds: at least one of the two


def test_one_hung_host_cannot_take_every_slot(db_path, outboxes):
    hung = HttpReceiver(lambda req: Reply(hold=True, hold_status=200)).start()
    other = HttpReceiver().start()
    try:
        box = outboxes(db_path, concurrency=4, per_host_concurrency=2)
        box.start()
        for n in range(6):
            box.enqueue('hung-%d' % n, hung.url(), 'POST', {'Seq': str(n)})
        box.enqueue('fine', other.url(), 'POST', {'Seq': '9'})
        assert other.wait_for(lambda: len(other.answered(200)) == 1, 3)
        assert hung.wait_for(lambda: len(hung.requests) == 2, 3)   # the host's two slots are taken
        assert not hung.wait_for(lambda: len(hung.requests) > 2, 0.3)  # a window: no third one
        hung.release()
        assert box.flush(10)
        assert sorted(seq_of(q) for q in hung.answered(200)) == list(range(6))
    finally:
        hung.release()
        hung.stop()
        other.stop()


def test_a_down_host_is_paused_not_hammered_then_gets_everything(db_path, outboxes):
    up = [False]
    with HttpReceiver(lambda req: Reply(status=200 if up[0] else 503)) as r:
        box = outboxes(db_path, backoff_base_s=3, backoff_max_s=3, per_host_concurrency=4)
        box.start()
        for n in range(20):
            box.enqueue('call-%d' % n, r.url(), 'POST', {'Seq': str(n)})
        assert r.wait_for(lambda: len(r.answered(503)) == 4, 3)
        # the host is down for 1.5-3 s: none of the 20 waiting webhooks is tried meanwhile
        assert not r.wait_for(lambda: len(r.requests) > 4, 1.0)
        assert box.stats()['hosts_down'] == {'127.0.0.1:%d' % r.port: (1, pytest.approx(1.5, abs=1.6))}
        up[0] = True
        assert box.flush(15)
    assert sorted(seq_of(q) for q in r.answered(200)) == list(range(20))
    assert box.stats()['hosts_down'] == {}


def test_delivered_rows_are_pruned_after_the_retention(db_path, outboxes):
    with HttpReceiver(lambda req: Reply(status=404 if req.path == '/gone' else 200)) as r:
        box = outboxes(db_path, retention_s=0.3)
        box.start()
        box.enqueue('c', r.url(), 'POST', {'Seq': '1'})
        box.enqueue('c', r.url('/gone'), 'POST', {'Seq': '2'})
        assert box.flush(5)
        assert box.delivered_count() == 1
        wait_until(lambda: box.delivered_count() == 0, 5, 'the delivered row pruned')
    assert [d['status'] for d in box.deliveries('c')] == ['failed']    # failed rows are kept


def test_a_full_database_keeps_webhooks_in_memory_then_stores_and_delivers_them(db_path, outboxes):
    big = 'x' * 6000     # a row longer than a page: it needs a new page, which the cap refuses
    with HttpReceiver() as r:
        box = outboxes(db_path, max_db_bytes=1 << 20, memory_limit=5)
        box.start()
        box.enqueue('c', r.url(), 'POST', {'Seq': '0'})
        assert box.flush(5)
        fill(db_path, 1.5)
        kept = [box.enqueue('c' if n % 2 else 'd', r.url(), 'POST', {'Seq': str(n), 'Big': big})
                for n in range(1, 6)]
        assert kept == [None] * 5
        with pytest.raises(OutboxError):
            box.enqueue('c', r.url(), 'POST', {'Seq': '6', 'Big': big})   # past the memory bound
        stats = box.stats()
        assert not stats['writable'] and 'full' in stats['write_error']
        assert stats['unsaved'] == 5 and stats['lost'] == 1 and stats['depth'] == 5
        assert [d['status'] for d in box.deliveries('c')] == ['delivered', 'unsaved', 'unsaved', 'unsaved']
        assert not r.wait_for(lambda: len(r.requests) > 1, 0.3)    # stored first, then sent
        unfill(db_path)
        assert box.flush(10)
    assert box.stats()['writable'] and box.stats()['unsaved'] == 0
    got = [seq_of(q) for q in r.answered(200)]
    assert sorted(got) == [0, 1, 2, 3, 4, 5]
    assert [s for s in got if s % 2] == [1, 3, 5]
    assert len({key_of(q) for q in r.requests}) == len(r.requests) == 6


def test_an_outcome_the_database_refused_is_recorded_later_not_sent_again(db_path, outboxes):
    with HttpReceiver(lambda req: Reply(hold=True, hold_status=200)) as r:
        box = outboxes(db_path)
        box.start()
        box.enqueue('c', r.url(), 'POST', {'Seq': '1'})
        assert r.wait_for(lambda: len(r.requests) == 1, 3)
        blocker = sqlite3.connect(db_path, timeout=0)
        blocker.execute('BEGIN IMMEDIATE')             # another writer holds the file
        r.release()                                    # delivered; recording it waits, then is refused
        wait_until(lambda: not box.stats()['writable'], 10, 'the outcome was refused')
        blocker.rollback()
        blocker.close()
        assert box.flush(10)
        assert not r.wait_for(lambda: len(r.requests) > 1, 0.3)
    (row,) = box.deliveries('c')
    assert row['status'] == 'delivered' and row['attempts'] == 1 and len(r.requests) == 1
