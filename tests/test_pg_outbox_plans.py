"""What runs on every delivery pass of the PostgreSQL outbox (webhooks/pg_outbox.py `_pass`: leases
taken back and renewed, due hosts, claims, expired windows, pruning, the counts /metrics reports) and
on every cluster heartbeat (records/node_beats.py, a dead node's live calls) reads an index, never the
whole table: a real PostgreSQL with 50 000 delivered webhooks and 50 000 ended calls, each statement
as the code sends it (a pass-through recorder in front of records.pg_db.PgDatabase) run under
EXPLAIN ANALYZE (no sequential scan of either table, and no plan node producing or filtering out
more than a handful of rows), with the planner's statistics fresh (ANALYZE) and with none yet (a table that filled before
autovacuum's first ANALYZE: the planner's default estimates).

Statistics taken while the rows were still pending and never again (autovacuum off) make the planner
expect every row to be pending, and it then reads the table for the due hosts: autovacuum
re-analyzes a table once a tenth of it changed (autovacuum_analyze_scale_factor), so that state
does not last on a server with autovacuum on (the default); it is not tested here."""
import re
import time

import pytest

from cluster_servers import PostgresServer
from pg_support import fresh_dsn
from records.node_beats import NodeBeats
from records.pg_db import PgDatabase
from records.schema import PG_SCHEMA
from webhooks.pg_outbox_table import PgOutboxTable

ROWS = 50_000


class Recorder:
    """A PgDatabase that passes every statement through and remembers it with its parameters."""

    def __init__(self, db):
        self.db, self.statements = db, []

    def run(self, sql, **params):
        self.statements.append((sql, params))
        return self.db.run(sql, **params)

    def transaction(self, autocommit=False):
        recorder, inner = self, self.db.transaction(autocommit)

        class Tx:
            def __enter__(self):
                self.tx = inner.__enter__()
                return self

            def __exit__(self, *exc):
                return inner.__exit__(*exc)

            def run(self, sql, **params):
                recorder.statements.append((sql, params))
                return self.tx.run(sql, **params)

            def row_count(self):
                return self.tx.row_count()
        return Tx()


def _fill(db, status):
    db.run("ALTER TABLE outbox SET (autovacuum_enabled = false)")
    db.run("ALTER TABLE calls SET (autovacuum_enabled = false)")
    db.run("INSERT INTO outbox (call_uuid, order_key, event, url, host, method, encoding, body, idempotency_key, "
           "status, attempts, max_attempts, next_attempt_at, created_at, updated_at, delivered_at, head, "
           "window_start, signer) SELECT 'c'||g, 'c'||g, 'Hangup', 'http://h.example/x', 'h.example', 'POST', "
           "'form', 'a=b', 'k'||g, :status, 1, 5, g, g, g, CASE WHEN :status='delivered' THEN g END, "
           "CASE WHEN :status='pending' THEN 1 ELSE 0 END, g, 'vobiz' FROM generate_series(1, :n) g",
           status=status, n=ROWS)
    db.run("INSERT INTO calls (uuid, node_id, status, start_time, end_time, created_at, updated_at) "
           "SELECT 'u'||g, 'n'||(g % 4), :status, g, CASE WHEN :status='completed' THEN g + 1 END, g, g "
           "FROM generate_series(1, :n) g", status="completed" if status == "delivered" else "in-progress", n=ROWS)


def _per_pass_statements(db) -> list:
    """Every statement of a delivery pass and a heartbeat, as the code sends them."""
    recorder = Recorder(db)
    table = PgOutboxTable(recorder)
    now = time.time()
    table.requeue(now, keep=[1, 2])
    table.requeue(now, "node-a", keep=[1])
    table.renew([1, 2, 3], "node-a", 30.0)
    table.host_dues()
    table.claim("h.example", 0.0, 8, "node-a", 30.0)   # (nothing due: the plan is the point)
    table.expired_heads(0.0, 100)
    table.counts()
    beats = NodeBeats(recorder)
    beats.stale(10.0)
    beats.age("node-a")
    recorder.run("SELECT * FROM calls WHERE node_id=:node AND status IN ('ringing','in-progress') "
                 "AND end_time IS NULL ORDER BY seq", node="n1")   # PgStore.live_calls_of's statement
    table.prune(10.0, 500)   # (each PRUNE_EVERY_S, and at once again while a batch was full)
    return [(sql, params) for sql, params in recorder.statements
            if re.match(r"\s*(SELECT|UPDATE|DELETE)", sql) and "pg_advisory" not in sql]


class _RollBack(Exception):
    pass


def _plan(db, sql, params) -> dict:
    """EXPLAIN ANALYZE's plan of `sql` (run in a transaction rolled back: an UPDATE or DELETE
    changes nothing)."""
    import json
    try:
        with db.transaction() as tx:
            found = tx.run("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, **params)
            raise _RollBack(found)
    except _RollBack as back:
        raw = back.args[0][0]["QUERY PLAN"]
    return (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]


def _nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _rows_read(plan) -> int:
    """The most rows any one node of the plan produced or filtered out."""
    return max(node.get("Actual Rows", 0) * node.get("Actual Loops", 1) + node.get("Rows Removed by Filter", 0)
               + node.get("Rows Removed by Index Recheck", 0) for node in _nodes(plan))


@pytest.fixture(scope="module")
def server():
    with PostgresServer() as pg:
        yield pg


def _database(server):
    db = PgDatabase(fresh_dsn(server))
    PgOutboxTable(db).create()
    for statement in PG_SCHEMA:
        db.run(statement)
    NodeBeats(db).claim("node-a", type("I", (), {"token": "t", "host": "h", "pid": 1, "pid_start": ""})(), 10.0,
                        lambda row: True)
    return db


def _check(db):
    statements = _per_pass_statements(db)
    assert len(statements) >= 12
    for sql, params in statements:
        plan = _plan(db, sql, params)
        scans = [n["Node Type"] for n in _nodes(plan) if n.get("Relation Name") in ("outbox", "calls")]
        assert "Seq Scan" not in scans, (sql, plan)
        # none of the 50 000 delivered webhooks or ended calls is walked: the statement reads only
        # the rows it is about (none here), whatever the node types
        assert _rows_read(plan) < 100, (sql, plan)


def test_per_pass_statements_use_indexes_with_fresh_statistics(server):
    db = _database(server)
    try:
        _fill(db, "delivered")
        db.run("ANALYZE outbox")
        db.run("ANALYZE calls")
        _check(db)
    finally:
        db.close()


def test_per_pass_statements_use_indexes_before_any_statistics(server):
    db = _database(server)
    try:
        _fill(db, "delivered")
        _check(db)
    finally:
        db.close()
