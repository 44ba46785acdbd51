"""Review tests for issue 15's cluster parts (docs/cluster.md), each failing on the defect it names:
real redis-server and PostgreSQL (tests/cluster_servers.py)."""
import time

import gevent
import pg8000.native
import redis
import requests

from cluster import Registry
from cluster_servers import PostgresServer, RedisServer
from harness import Stack
from http_receiver import HttpReceiver
from pg_support import fresh_dsn, rows
from records import PgStore
from records.pg_db import PgDatabase
from serve_support import check_delivered_once_in_order
from switch_sim import CallScript
from test_cluster_registry import _live_call_on, cluster, redis_server  # noqa: F401 (fixtures)
from waiting import wait_until
from webhooks import PgOutbox


def _execute(dsn, sql):
    """Run statements as another client (DDL: no rows)."""
    host_port, database = dsn.rsplit("@", 1)[1].split("/")
    conn = pg8000.native.Connection("callfork", host="127.0.0.1", port=int(host_port.split(":")[1]),
                                    database=database, timeout=5)
    try:
        for statement in sql.split(";\n"):
            conn.run(statement)
    finally:
        conn.close()


def test_nodes_that_lost_redis_together_are_not_pruned_as_dead_by_the_first_one_back():
    """Redis kept running but no node reached it for longer than node_ttl_s (a network cut, a stalled
    Redis): every node key expired meanwhile while callfork:nodes still names them all. The first node
    back must not take the others for dead (removing their calls and, with PostgreSQL, closing their
    live call records) before they had a heartbeat's chance to come back too; a node that really
    died during the outage is still pruned."""
    with RedisServer() as server:
        admin = redis.Redis.from_url(server.url, decode_responses=True)
        fast = Registry(server.url, "fast", "http://127.0.0.1:1", heartbeat_s=0.05, node_ttl_s=2).start()
        slow = Registry(server.url, "slow", "http://127.0.0.1:2", heartbeat_s=0.5, node_ttl_s=2).start()
        gone = Registry(server.url, "gone", "http://127.0.0.1:3", heartbeat_s=0.05, node_ttl_s=2).start()
        dead = []
        for registry in (fast, slow):
            registry.on_dead_node(lambda node_id, calls, me=registry.node_id: dead.append((me, node_id, calls)))
        try:
            slow.call_started("live-call", {"status": "in-progress"})
            wait_until(lambda: admin.hget("callfork:calls", "live-call") is not None, 5, "the call registered")
            gone._keeper.kill()   # dies during the outage (no goodbye)
            # the nodes lose Redis: new connections need a password they do not have, old ones are cut
            admin.config_set("requirepass", "outage")
            admin.execute_command("AUTH", "outage")
            admin.client_kill_filter(_type="normal", skipme=True)
            wait_until(lambda: fast.state()["redis"] == "unreachable" and slow.state()["redis"] == "unreachable",
                       5, "both nodes see Redis away")
            # meanwhile their registrations expire (as node_ttl_s would); callfork:nodes keeps the ids
            admin.delete("callfork:node:fast", "callfork:node:slow", "callfork:node:gone")
            admin.config_set("requirepass", "")
            wait_until(lambda: fast.state()["redis"] == "ok" and slow.state()["redis"] == "ok"
                       and admin.exists("callfork:node:slow"), 5, "both nodes back in Redis")
            assert [d for d in dead if d[1] != "gone"] == []
            assert admin.hget("callfork:calls", "live-call") is not None
            wait_until(lambda: [d[1] for d in dead] == ["gone"], 10, "the node that died is still pruned")
        finally:
            for registry in (fast, slow):
                registry.stop()


def test_a_request_without_valid_credentials_is_not_carried_to_the_owner(cluster):
    """Node B answers a request for node A's call that does not authenticate itself (401, its own),
    instead of carrying it to A's advertise_url (an address the caller may not reach otherwise) and
    telling which node runs the call (X-Callfork-Served-By)."""
    _, a, b, db = cluster
    call = _live_call_on(a, db)
    vobiz = f"{b.url}/api/v1/Account/MA_LOCAL/Call/{call.uuid}/"
    twilio = f"{b.url}/2010-04-01/Accounts/MA_LOCAL/Calls/CA{call.uuid.replace('-', '')}.json"
    for method, url, headers in (("GET", vobiz, {}), ("DELETE", vobiz, {}),
                                 ("DELETE", vobiz, {"X-Auth-ID": "MA_LOCAL", "X-Auth-Token": "wrong"}),
                                 ("GET", twilio, {}), ("POST", twilio, {"Authorization": "Basic TUFfTE9DQUw6d3Jvbmc="})):
        resp = requests.request(method, url, headers=headers, data={"Status": "completed"}, timeout=20)
        assert resp.status_code == 401, (method, url, resp.status_code)
        assert "X-Callfork-Served-By" not in resp.headers, (method, url, headers)
    # with the credentials the request is carried, and the call is still live after the refusals
    resp = b.api("GET", f"/Call/{call.uuid}/")
    assert resp.status_code == 200 and resp.headers["X-Callfork-Served-By"] == "node-a"
    assert resp.json()["live"] is True


def test_a_webhook_committed_while_its_insert_timed_out_does_not_stop_the_outbox(tmp_path):
    """An INSERT whose COMMIT took longer than the socket timeout: the server committed the row, the
    node saw PostgreSQL as away and kept the webhook in memory. Storing the kept copy later must find
    the row already there (same idempotency key) rather than fail on the unique key at every pass,
    which stopped the node's scheduler for good (nothing claimed or renewed, every later webhook
    kept in memory until lost)."""
    with PostgresServer() as server:
        dsn = fresh_dsn(server)
        hooks = HttpReceiver().start()
        outbox = PgOutbox(dsn, node_id="n1", auth_token="T", poll_s=0.1, lease_s=2, db_timeout_s=1,
                          backoff_base_s=0.05, backoff_max_s=0.2)
        outbox.start()
        try:
            # a COMMIT that takes 2 s (a deferred trigger): the client gives up after 1 s, the server commits
            _execute(dsn, "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
                      "$$ BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$;\n"
                      "CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON outbox DEFERRABLE INITIALLY DEFERRED "
                      "FOR EACH ROW EXECUTE FUNCTION slow_commit()")
            assert outbox.enqueue("call-1", hooks.url("/h"), "POST", {"n": "0"}) is None   # kept in memory
            wait_until(lambda: rows(dsn, "SELECT COUNT(*) AS n FROM outbox") == [{"n": 1}], 10, "committed anyway")
            _execute(dsn, "DROP TRIGGER slow ON outbox")
            outbox.enqueue("call-1", hooks.url("/h"), "POST", {"n": "1"})
            assert outbox.flush(20), outbox.stats()
            stored = rows(dsn, "SELECT id, call_uuid, idempotency_key, status FROM outbox ORDER BY id")
            assert [r["status"] for r in stored] == ["delivered", "delivered"]
            assert outbox.stats()["unsaved"] == 0
            check_delivered_once_in_order(hooks.answered(200), stored)
        finally:
            outbox.close()
            hooks.stop()


def test_a_read_while_the_backlog_is_written_neither_writes_it_twice_nor_drops_later_writes():
    """PostgreSQL is back and the retry writes a large backlog (one statement per kept write, each a
    round trip): a REST read meanwhile writes the backlog first too. The two must not both write the
    same kept writes and then both remove their count from the backlog, which removed writes kept
    meanwhile (never written) or failed with an IndexError."""
    with PostgresServer() as server:
        dsn = fresh_dsn(server)
        store = PgStore(dsn, node_id="n1", flush_delay_s=0)
        try:
            server.stop()
            for i in range(1500):   # kept in memory
                store.upsert_call("early-%d" % i, status="ringing", start_time=float(i))
            store.add_recording("rec", "early-0", path="/r.wav", format="wav")
            server.start()
            # past the retry pause (as a read a second later would be): a read writes the backlog first
            wait_until(lambda: time.monotonic() >= store._next_try, 5, "the retry pause over", interval=0.01)
            errors = []

            def guarded(fn, *args):
                try:
                    return fn(*args)
                except Exception as exc:   # noqa: BLE001 - the test reports it
                    errors.append(repr(exc))

            flushing = gevent.spawn(guarded, store.flush)
            wait_until(lambda: rows(dsn, "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE "
                                         "application_name='callfork' AND state='idle in transaction'") != [{"n": 0}]
                       or flushing.dead, 10, "the backlog being written", interval=0.001)
            store.upsert_call("late-1", status="ringing", start_time=2000.0)   # kept behind the backlog
            reading = gevent.spawn(guarded, store.get_call, "early-0")
            gevent.sleep(0)
            store.upsert_call("late-2", status="ringing", start_time=2001.0)   # kept while both run
            gevent.joinall([flushing, reading], timeout=60)
            assert errors == []
            wait_until(lambda: store.health()["kept"] == 0, 10, "everything written")
            assert rows(dsn, "SELECT COUNT(*) AS n FROM calls") == [{"n": 1502}]
            assert rows(dsn, "SELECT COUNT(*) AS n FROM recordings") == [{"n": 1}]
            assert store.health()["dropped"] == 0
        finally:
            if server.proc is None:
                server.start()
            store.close()


def test_a_stopped_cluster_service_closes_its_postgresql_and_redis_connections():
    """Service.stop() of a node on PostgreSQL and Redis leaves none of its connections open (the
    records' and the outbox's pools, the registry's), as a service stopped and started again in one
    process (tests, an embedding) would otherwise pile them up against max_connections."""
    with PostgresServer() as pg, RedisServer() as rs:
        dsn = fresh_dsn(pg)
        database = dsn.rsplit("/", 1)[1]
        admin = redis.Redis.from_url(rs.url, decode_responses=True)

        def pg_connections():
            return rows(dsn, "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname='%s' "
                             "AND pid <> pg_backend_pid()" % database)[0]["n"]

        def redis_connections():
            return len(admin.client_list()) - 1   # (this one)

        stack = Stack(env={"CALLFORK_STORE_POSTGRES_DSN": dsn, "CALLFORK_CLUSTER_REDIS_URL": rs.url,
                           "CALLFORK_CLUSTER_NODE_ID": "solo"})
        stack.start()
        try:
            stack.app.document("/answer", "<Response><Wait length=\"1\"/></Response>")
            call = stack.sim.place_call(CallScript(to="1000", hangup_after=5))
            call.wait(15)
            wait_until(lambda: (stack.service.store.get_call(call.uuid) or {}).get("end_time"), 10, "recorded")
            assert pg_connections() > 0 and redis_connections() > 0
        finally:
            stack.stop()
        wait_until(lambda: pg_connections() == 0, 5, "PostgreSQL connections closed")
        wait_until(lambda: redis_connections() == 0, 5, "Redis connections closed")


def test_a_node_that_vanishes_inside_a_transaction_does_not_stall_the_others_delivery():
    """A node whose host vanished (power, network) while one of its transactions held a row lock: the
    server sees its session idle in transaction, and without a limit keeps the lock for as long as TCP
    takes to notice (hours). Every other node's scheduler pass then waited on that row (taking back
    expired leases), timed out client-side, and tried again, leaving a server backend waiting on the
    lock at each try: nothing was delivered and the waiting backends piled up. The nodes' sessions
    carry server-side limits (idle in transaction, statement time) tied to the client timeout."""
    with PostgresServer() as server:
        dsn = fresh_dsn(server)
        hooks = HttpReceiver().start()
        node = PgOutbox(dsn, node_id="node-b", auth_token="T", poll_s=0.1, lease_s=2, db_timeout_s=1,
                        backoff_base_s=0.05, backoff_max_s=0.2)
        ghost = PgDatabase(dsn, timeout_s=1)   # the vanished node's connection (same settings as ours)
        try:
            first = node.enqueue("call-1", hooks.url("/h"), "POST", {"n": "0"})   # stored, not sent (not started)
            node.enqueue("call-1", hooks.url("/h"), "POST", {"n": "1"})
            _execute(dsn, "UPDATE outbox SET status='in_flight', attempts=1, lease_owner='node-a', lease_until=0 "
                          "WHERE id=%d" % first)   # node-a's attempt, its lease over
            tx = ghost.transaction().__enter__()   # node-a's last transaction: it never comes back
            tx.run("SELECT id FROM outbox WHERE id=:id FOR UPDATE", id=first)
            node.start()
            assert node.flush(20), node.stats()
            stored = rows(dsn, "SELECT id, call_uuid, idempotency_key, status FROM outbox ORDER BY id")
            assert [r["status"] for r in stored] == ["delivered", "delivered"]
            check_delivered_once_in_order(hooks.answered(200), stored)
            waiting = rows(dsn, "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE wait_event_type='Lock'")
            assert waiting == [{"n": 0}]
        finally:
            node.close()
            ghost.close()
            hooks.stop()
