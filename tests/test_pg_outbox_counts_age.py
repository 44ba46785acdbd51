"""webhooks/pg_outbox.py's counts (/metrics and /healthz read them) are at most about poll_s old, as
its docstring says, on a real PostgreSQL and a real HTTP receiver, also when a wake-up (an enqueue,
a finished attempt) came just before the next look at the table was due: a wake-up does not look,
and the scheduler's wait after it must end when that look is due, not poll_s after the wake-up."""
import time

import gevent
import pytest

from cluster_servers import PostgresServer
from http_receiver import HttpReceiver
from pg_support import fresh_dsn, rows
from waiting import wait_until
from webhooks import PgOutbox

POLL_S = 1.0


@pytest.fixture(scope="module")
def server():
    with PostgresServer() as pg:
        yield pg


def add_failed(dsn, key):
    """A webhook another node failed."""
    rows(dsn, "INSERT INTO outbox (order_key, url, method, encoding, body, idempotency_key, status, max_attempts, "
              "next_attempt_at, created_at, updated_at, host) VALUES ('other', 'http://x/', 'POST', 'form', '', "
              f"'{key}', 'failed', 1, 0, 0, 0, 'x') RETURNING id")


def test_a_wakeup_just_before_the_look_is_due_does_not_put_it_off(server):
    dsn = fresh_dsn(server)
    hooks = HttpReceiver().start()
    box = PgOutbox(dsn, node_id="node-a", auth_token="T", poll_s=POLL_S)
    box.start()
    try:
        add_failed(dsn, "first")
        wait_until(lambda: box.failed_count() == 1, 5, "the first failed row counted", interval=0.005)
        looked = time.monotonic()   # a look at the table just happened (within 5 ms)
        gevent.sleep(POLL_S * 0.85)   # pacing: the wake-up comes shortly before the next look is due
        box.enqueue("call-1", hooks.url("/h"), "POST", {"n": "1"})
        add_failed(dsn, "second")
        wait_until(lambda: box.failed_count() == 2, 5, "the second failed row counted", interval=0.005)
        assert time.monotonic() - looked < POLL_S * 1.4   # not the wake-up + poll_s (about 1.85 poll_s)
        wait_until(lambda: hooks.answered(200), 5, "the webhook delivered")
    finally:
        box.close()
        hooks.stop()
