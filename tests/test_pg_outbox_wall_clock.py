"""webhooks/pg_outbox.py's scheduler when the node's wall clock steps back (NTP correcting it, an
operator setting it), on a real PostgreSQL and a real HTTP receiver: the node keeps renewing the
lease of the webhook it is sending (or another node would send it again once the lease ran out on
the server's clock), and keeps reading the table's counts (/metrics and /healthz) and looking for
lapsed leases and ended windows at most every poll_s. Both are paced by the monotonic clock; a
wall-clock deadline an hour ahead after the step would stop them for an hour.

The step is the only thing faked: pg_outbox's `time` module answers time() an hour behind from the
moment the test says so (monotonic() is the real one)."""
import time
import types

import pytest

from cluster_servers import PostgresServer
from http_receiver import HttpReceiver, Reply
from pg_support import fresh_dsn, rows
from waiting import wait_until
from webhooks import PgOutbox, pg_outbox

STEP_S = 3600.0


@pytest.fixture(scope="module")
def server():
    with PostgresServer() as pg:
        yield pg


@pytest.fixture
def stepped_clock(monkeypatch):
    """pg_outbox's clock; set `.behind` to step its wall clock back."""
    clock = types.SimpleNamespace(behind=0.0)
    fake = types.SimpleNamespace(time=lambda: time.time() - clock.behind, monotonic=time.monotonic,
                                 sleep=time.sleep)
    monkeypatch.setattr(pg_outbox, "time", fake)
    return clock


def lease_until(dsn, delivery_id):
    return rows(dsn, f"SELECT lease_until FROM outbox WHERE id={int(delivery_id)}")[0]["lease_until"]


def test_a_wall_clock_stepped_back_stops_neither_lease_renewal_nor_the_counts(server, stepped_clock):
    dsn = fresh_dsn(server)
    hooks = HttpReceiver(responder=lambda req: Reply(hold=True, hold_status=200)).start()
    box = PgOutbox(dsn, node_id="node-a", auth_token="T", poll_s=0.1, lease_s=1.5, read_timeout_s=30)
    box.start()
    try:
        sent = box.enqueue("call-1", hooks.url("/h"), "POST", {"n": "1"})
        wait_until(lambda: hooks.requests, 10, "the webhook at the receiver (held there)")
        stepped_clock.behind = STEP_S
        at_step = lease_until(dsn, sent)
        # renewed every lease_s / 3 still: the lease moves on past where it stood at the step
        wait_until(lambda: lease_until(dsn, sent) > at_step + 1.0, 5, "the lease renewed after the step")
        # another node's failed webhook shows in this node's counts within a few poll_s
        rows(dsn, "INSERT INTO outbox (order_key, url, method, encoding, body, idempotency_key, status, "
                  "max_attempts, next_attempt_at, created_at, updated_at, host) VALUES ('call-2', 'http://x/', "
                  "'POST', 'form', '', 'other-node-key', 'failed', 1, 0, 0, 0, 'x') RETURNING id")
        wait_until(lambda: box.failed_count() == 1, 5, "the failed row counted")
        hooks.release()
        assert box.flush(10), box.stats()
        assert box.get_delivery(sent)["status"] == "delivered"
    finally:
        box.close()
        hooks.stop()
