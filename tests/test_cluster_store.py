"""PgStore (records/pg_store.py, `[store] postgres_dsn`) on a real PostgreSQL 15: it behaves as the
SQLite Store's tests say a Store behaves (the same test bodies run on it), records the node that
created each call and closes only that node's calls, keeps writes in memory while PostgreSQL is
stopped and writes them, in order, when it is back, and never holds the gevent hub on a server that
accepts connections but never answers. The SQLite store gets the node_id column too."""
import socket
import sqlite3
import time

import gevent
import pytest

import test_webhooks_store as sqlite_cases
from cluster_servers import PostgresServer, free_port
from pg_support import fresh_dsn, rows
from records import PgStore, PgUnavailable, Store
from waiting import wait_until


@pytest.fixture(scope="module")
def pg():
    with PostgresServer() as server:
        yield server


@pytest.fixture
def dsn(pg):
    if pg.proc is None:   # a test stopped it and failed before starting it again
        pg.start()
    return fresh_dsn(pg)


@pytest.fixture
def store(dsn):
    s = PgStore(dsn, node_id="node-a")
    yield s
    s.close()


SQLITE_CASES = ["test_call_round_trip_and_partial_updates", "test_call_field_validation",
                "test_list_calls_filters_and_pages", "test_timeline", "test_streams", "test_recordings",
                "test_many_greenlets_write_concurrently"]


@pytest.mark.parametrize("case", SQLITE_CASES)
def test_it_behaves_as_the_sqlite_store(case, store):
    getattr(sqlite_cases, case)(store)


def test_epoch_milliseconds_fit_as_they_do_in_sqlite(store):
    now_ms = int(time.time() * 1000)   # recordings keep start_ms/end_ms as epoch milliseconds
    store.add_recording("r1", "u1", path="/r1.wav", format="wav", start_ms=now_ms)
    store.update_recording("r1", end_ms=now_ms + 1500, duration_ms=1500)
    assert (store.get_recording("r1")["start_ms"], store.get_recording("r1")["end_ms"]) == (now_ms, now_ms + 1500)


def test_timeline_rows_wait_for_the_next_write_then_every_node_reads_them(dsn, store):
    store.add_event("u1", "verb", {"name": "Speak"})
    assert rows(dsn, "SELECT COUNT(*) AS n FROM call_events")[0]["n"] == 0   # grouped, not written yet
    store.upsert_call("u1", status="ringing")
    assert rows(dsn, "SELECT kind FROM call_events") == [{"kind": "verb"}]
    other = PgStore(dsn, node_id="node-b")   # another node sees what this one wrote
    try:
        assert other.get_call("u1")["status"] == "ringing"
        assert [e["kind"] for e in other.timeline("u1")] == ["verb"]
    finally:
        other.close()


def test_calls_carry_their_node_and_a_node_closes_only_its_own(dsn, store):
    other = PgStore(dsn, node_id="node-b")
    try:
        store.upsert_call("a1", status="in-progress", start_time=1.0)
        store.upsert_call("a2", status="completed", start_time=2.0, end_time=3.0)
        other.upsert_call("b1", status="ringing", start_time=4.0)
        other.upsert_call("a1", status="in-progress")   # an update keeps the creator
        assert [store.get_call(u)["node_id"] for u in ("a1", "a2", "b1")] == ["node-a", "node-a", "node-b"]
        assert [c["uuid"] for c in store.live_calls_of("node-a")] == ["a1"]

        assert store.close_calls_of("node-a", "node node-a died") == ["a1"]
        a1 = other.get_call("a1")
        assert a1["status"] == "completed" and a1["end_time"] is not None and a1["error"] == "node node-a died"
        assert other.timeline("a1")[-1]["kind"] == "service_restarted"
        assert other.get_call("b1")["status"] == "ringing"          # a live neighbour's call is left alone
        assert other.get_call("a2")["end_time"] == 3.0
        assert store.close_calls_of("node-a") == []
    finally:
        other.close()


def test_the_sqlite_store_has_the_node_id_column_even_on_an_older_file(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)   # a calls table as an older callfork made it: no node_id
    conn.execute("CREATE TABLE calls (uuid TEXT PRIMARY KEY, direction TEXT, from_number TEXT, to_number TEXT, "
                 "answer_url TEXT, status TEXT, start_time REAL, answer_time REAL, end_time REAL, hangup_cause TEXT, "
                 "hangup_cause_code INTEGER, hangup_cause_name TEXT, hangup_source TEXT, error TEXT, "
                 "created_at REAL NOT NULL, updated_at REAL NOT NULL)")
    conn.execute("INSERT INTO calls (uuid, status, created_at, updated_at) VALUES ('old', 'completed', 1, 1)")
    conn.commit()
    conn.close()
    store = Store(str(path))
    try:
        store.upsert_call("new", status="ringing")
        assert store.get_call("old")["node_id"] == "" and store.get_call("new")["node_id"] == ""
    finally:
        store.close()


def test_postgresql_stopped_during_writes_loses_nothing(pg, dsn, store):
    store.upsert_call("c1", status="ringing", start_time=1.0)
    store.add_recording("r1", "c1", path="/r1.wav", format="wav")
    pg.stop()
    try:
        started = time.monotonic()
        store.upsert_call("c1", status="in-progress", answer_time=2.0)   # none of these raise into the call
        store.add_event("c1", "verb", {"name": "Play"})
        store.upsert_stream("s1", call_uuid="c1", service_url="wss://app/ws", status="in-progress")
        store.update_recording("r1", duration_ms=1500)
        store.add_event("c1", "verb", {"name": "Hangup"})
        store.upsert_call("c2", status="ringing", start_time=3.0)
        store.upsert_call("c1", status="completed", end_time=4.0)
        store.flush()
        assert time.monotonic() - started < 5
        health = store.health()
        assert health["degraded"] and not health["writable"] and health["kept"] >= 6 and health["dropped"] == 0
        with pytest.raises(PgUnavailable):
            store.get_call("c1")
    finally:
        pg.start()
    wait_until(lambda: store.health()["writable"], 10, "the kept writes written (by the retry timer)")
    other = PgStore(dsn, node_id="node-b")
    try:
        c1 = other.get_call("c1")
        assert (c1["status"], c1["answer_time"], c1["end_time"]) == ("completed", 2.0, 4.0)
        assert other.get_call("c2")["status"] == "ringing"
        assert [e["detail"]["name"] for e in other.timeline("c1")] == ["Play", "Hangup"]
        assert other.get_stream("s1")["status"] == "in-progress"
        assert other.get_recording("r1")["duration_ms"] == 1500
        assert store.health() == {"writable": True, "error": None, "kept": 0, "dropped": 0, "degraded": False,
                                  "backend": "postgresql"}
    finally:
        other.close()


def test_a_bounded_backlog_drops_and_counts_past_its_limit(pg, dsn):
    store = PgStore(dsn, node_id="n", max_backlog=3, flush_delay_s=0)
    pg.stop()
    try:
        for i in range(5):
            store.upsert_call("c%d" % i, status="ringing")
        assert store.health()["kept"] == 3 and store.health()["dropped"] == 2
    finally:
        pg.start()
    wait_until(lambda: store.health()["writable"], 10, "the kept writes written")
    assert store.count_calls() == 3
    store.close()


def test_a_server_that_never_answers_does_not_hold_the_hub():
    silent = socket.socket()
    silent.bind(("127.0.0.1", free_port()))
    silent.listen(8)   # accepts connections (the kernel does) and never says a word
    ticks = []
    # a measurement: how often the hub ran another greenlet (one tick per 20 ms) while the store waited
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.02)) for _ in range(1000)])
    try:
        started = time.monotonic()
        store = PgStore("postgresql://callfork@127.0.0.1:%d/callfork" % silent.getsockname()[1],
                        node_id="n", timeout_s=0.5)
        store.upsert_call("c1", status="ringing")   # kept: the server does not answer
        assert time.monotonic() - started < 3
        assert store.health()["degraded"] and store.health()["kept"] == 1
        assert len(ticks) >= 10   # other greenlets ran while it waited
    finally:
        ticker.kill()
        silent.close()


def test_a_store_started_while_postgresql_is_away_creates_its_tables_when_it_is_back(pg, dsn):
    pg.stop()
    try:
        store = PgStore(dsn, node_id="n")   # starts: calls must not wait for PostgreSQL
        store.upsert_call("c1", status="ringing", start_time=1.0)
        store.add_event("c1", "verb", {"name": "Wait"})
        store.flush()
        assert store.health()["degraded"]
    finally:
        pg.start()
    wait_until(lambda: store.health()["writable"], 10, "the tables created and the kept writes written")
    store.upsert_stream("s1", call_uuid="c1", status="in-progress")
    assert store.get_call("c1")["status"] == "ringing" and store.get_call("c1")["node_id"] == "n"
    assert [e["kind"] for e in store.timeline("c1")] == ["verb"]
    assert store.get_stream("s1")["call_uuid"] == "c1"
    store.close()
