"""webhooks/pg_outbox.py fails a call's head whose retry window ended (another node's, not due
again before then), on a real PostgreSQL and a real HTTP receiver, while the node is busy: its
scheduler wakes for every enqueue and finished attempt, and those wake-ups renew and claim only;
the window check (with lapsed leases and the counts) runs at most every poll_s. A stream of
webhooks to another receiver must not put the check off: the head fails within a few poll_s, the
call's later webhooks are held behind it, and the counts /metrics and /healthz read say so."""
import time

import gevent
import pytest

from cluster_servers import PostgresServer
from http_receiver import HttpReceiver
from pg_support import fresh_dsn, rows
from waiting import wait_until
from webhooks import PgOutbox

WINDOW_S = 1.0


@pytest.fixture(scope="module")
def server():
    with PostgresServer() as pg:
        yield pg


def test_a_head_whose_window_ended_fails_while_wakeups_keep_coming(server):
    dsn = fresh_dsn(server)
    up = HttpReceiver().start()
    box = PgOutbox(dsn, node_id="node-a", auth_token="T", poll_s=0.2, retry_window_s=WINDOW_S)
    box.start()
    busy = None
    try:
        enqueued = [0]

        def keep_busy():   # a wake-up every 20 ms: an enqueue, then its finished attempt
            while True:
                box.enqueue(f"call-up-{enqueued[0]}", up.url("/h"), "POST", {"n": str(enqueued[0])})
                enqueued[0] += 1
                gevent.sleep(0.02)   # the pace of the stream of webhooks, not a wait for a condition

        busy = gevent.spawn(keep_busy)
        wait_until(lambda: enqueued[0] >= 10 and up.answered(200), 5, "the node busy: woken every 20 ms")
        # another node's call: its head's window started 10 s ago, its next attempt is an hour away
        # (its receiver asked for that with Retry-After), and one webhook waits behind it
        now = time.time()
        values = ", ".join(
            f"('call-b', 'call-b', 'http://b.invalid/h', 'POST', 'form', '', 'key-{n}', 'pending', 10, {now + 3600}, "
            f"{now - 10}, {now - 10}, 'b.invalid', {head}, {now - 10 if head else 'NULL'}, {head}, "
            f"{'$$HTTP 503$$' if head else 'NULL'})" for n, head in ((1, 1), (2, 0)))
        rows(dsn, "INSERT INTO outbox (call_uuid, order_key, url, method, encoding, body, idempotency_key, status, "
                  "max_attempts, next_attempt_at, created_at, updated_at, host, head, window_start, attempts, "
                  f"last_error) VALUES {values} RETURNING id")   # both at once, as the node that stored them
        started = time.monotonic()
        head = wait_until(lambda: rows(dsn, "SELECT status, last_error FROM outbox WHERE idempotency_key='key-1' "
                                            "AND status <> 'pending'"), 5, "the head failed")[0]
        assert time.monotonic() - started < 3.0   # a few poll_s, with room for a loaded machine
        assert head["status"] == "failed" and "retry window" in head["last_error"]
        assert rows(dsn, "SELECT status FROM outbox WHERE idempotency_key=$$key-2$$") == [{"status": "held"}]
        wait_until(lambda: (box.stats()["failed"], box.stats()["held"]) == (1, 1), 3, "the counts")
    finally:
        if busy is not None:
            busy.kill()
        box.close()
        up.stop()
