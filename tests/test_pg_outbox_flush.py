"""webhooks/pg_outbox.py's flush(timeout) on a real PostgreSQL and a real HTTP receiver: when it
says the table has nothing left to send, this node's own deliveries have finished recording their
outcomes too, so `delivered` (and what a caller reads or prints next, as tests/pg_outbox_node.py
does before it closes) counts every one. The table shows a row delivered as soon as its COMMIT is
in; the greenlet that sent it counts it only when the COMMIT's answer has been read, and flush's
own read of the table (it polls every poll_s) could come between the two."""
import pytest

from cluster_servers import PostgresServer
from http_receiver import HttpReceiver
from pg_support import fresh_dsn
from webhooks import PgOutbox

ROUNDS = 40


@pytest.fixture(scope="module")
def server():
    with PostgresServer() as pg:
        yield pg


def test_flush_returns_after_this_nodes_outcomes_are_recorded(server):
    hooks = HttpReceiver().start()
    box = PgOutbox(fresh_dsn(server), node_id="node-a", auth_token="T", poll_s=0.002, concurrency=8)
    box.start()
    try:
        sent = 0
        for _ in range(ROUNDS):
            for i in range(4):
                box.enqueue(f"call-{i}", hooks.url("/h"), "POST", {"n": str(sent)})
                sent += 1
            assert box.flush(10)
            assert box.delivered == sent, (box.delivered, sent)
    finally:
        box.close()
        hooks.stop()
