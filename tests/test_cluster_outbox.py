"""The webhook outbox in PostgreSQL (webhooks/pg_outbox.py, `[store] postgres_dsn`) on a real
PostgreSQL 15 and real HTTP receivers: two nodes sharing the table deliver each webhook once, each
call's in order, with retries; PostgreSQL stopped for a while loses nothing (webhooks wait in memory,
attempts in flight are recorded later); and, with real `callfork serve` processes, a node killed
with `kill -9` while its webhooks wait for a receiver that is down, or while one of them is in
flight, has them delivered by a second node, in order, with the same idempotency keys (the SQLite
version: tests/test_service_webhooks.py).

Two PgOutbox objects in one test process are two nodes here: they share nothing but the table (each
has its own connections, node id, leases, scheduler and HTTP pool)."""
import random
import sys
from pathlib import Path

import gevent.subprocess
import pytest
import requests

from cluster_servers import PostgresServer
from harness import AppServer
from http_receiver import HttpReceiver, Reply
from pg_support import fresh_dsn, rows
from serve_support import (ServeProcess, check_delivered_once_in_order, idempotency_key, number_table,
                           serve_ports, write_serve_config)
from switch_sim import CallScript, Simulator
from waiting import wait_until
from webhooks import PgOutbox

NODE_SCRIPT = Path(__file__).resolve().parent / "pg_outbox_node.py"
FAST = {"backoff_base_s": 0.05, "backoff_max_s": 0.2, "poll_s": 0.1}


@pytest.fixture(scope="module")
def pg():
    with PostgresServer() as server:
        yield server


@pytest.fixture
def dsn(pg):
    if pg.proc is None:   # a test stopped it and failed before starting it again
        pg.start()
    return fresh_dsn(pg)


def _outbox(dsn, node, **kwargs):
    return PgOutbox(dsn, node_id=node, auth_token="T", **dict(FAST, **kwargs))


def test_two_nodes_share_the_table_and_deliver_each_webhook_once_in_call_order(dsn):
    answers = random.Random(15)

    def respond(req):   # a flaky receiver: some attempts fail and are retried
        return Reply(503) if answers.random() < 0.25 else Reply(200, delay=answers.random() * 0.02)

    hooks = HttpReceiver(responder=respond).start()
    a, b = _outbox(dsn, "node-a"), _outbox(dsn, "node-b")
    a.start()
    b.start()
    try:
        for i in range(60):   # the two nodes enqueue into the same calls, interleaved
            (a if i % 2 else b).enqueue("call-%d" % (i % 4), hooks.url("/hook/%d" % i), "POST", {"n": str(i)})
        assert a.flush(30) and b.flush(5)
        deliveries = [d for c in range(4) for d in a.deliveries("call-%d" % c)]
        assert len(deliveries) == 60 and all(d["status"] == "delivered" for d in deliveries)
        check_delivered_once_in_order(hooks.answered(200), sorted(deliveries, key=lambda d: d["id"]))
        assert a.delivered + b.delivered == 60 and a.delivered and b.delivered   # both nodes did some
        assert any(d["attempts"] > 1 for d in deliveries)                         # retries happened
        owners = rows(dsn, "SELECT COUNT(*) AS n FROM outbox WHERE lease_owner IS NOT NULL")
        assert owners == [{"n": 0}]
    finally:
        a.close()
        b.close()
        hooks.stop()


def test_three_node_processes_with_leases_shorter_than_an_answer_send_each_webhook_once_in_order(dsn):
    """Real concurrency (three processes on one table) and lease renewal: each answer takes longer
    than a lease, so a node that did not renew would lose its rows to another node, which would send
    them again. The lease (0.6 s, renewed every 0.2 s) leaves room for a loaded machine's late
    renewal; at 0.3 s it was lost about once in five runs under a parallel suite."""
    answers = random.Random(3)
    hooks = HttpReceiver(responder=lambda req: Reply(503) if answers.random() < 0.2 else Reply(200, delay=0.8))
    hooks.start()
    try:
        nodes = [gevent.subprocess.Popen([sys.executable, str(NODE_SCRIPT), dsn, "node-%d" % k, hooks.url("/h"),
                                          str(k * 30), "30", "0.6"], stdout=gevent.subprocess.PIPE, text=True)
                 for k in range(3)]
        outputs = [node.communicate(timeout=120)[0] for node in nodes]
        assert all(node.returncode == 0 for node in nodes) and all("flushed True" in o for o in outputs), outputs
        stored = rows(dsn, "SELECT id, call_uuid, idempotency_key, status FROM outbox ORDER BY id")
        assert len(stored) == 90 and {d["status"] for d in stored} == {"delivered"}
        check_delivered_once_in_order(hooks.answered(200), stored)
        assert all("lost_leases 0" in o for o in outputs) and sum(int(o.split()[1]) for o in outputs) == 90
    finally:
        hooks.stop()


def test_a_dead_nodes_lease_runs_out_and_another_node_delivers_its_rows_in_order(dsn):
    hooks = HttpReceiver().start()
    a = _outbox(dsn, "node-a")
    a.start()
    a.stop()                     # not running: it stores rows and sends none of them
    keys = [a.enqueue("call-1", hooks.url("/h"), "POST", {"n": str(i)}) for i in range(3)]
    # node-a claimed the head and died with it in flight (its lease runs out in 1 s)
    rows(dsn, "UPDATE outbox SET status='in_flight', attempts=1, lease_owner='node-a', "
              "lease_until=EXTRACT(EPOCH FROM clock_timestamp()) + 1 WHERE id=%d RETURNING id" % keys[0])
    b = _outbox(dsn, "node-b", lease_s=5)
    b.start()
    try:
        assert b.flush(15)
        assert [r.form["n"] for r in hooks.answered(200)] == ["0", "1", "2"]
        first = b.get_delivery(keys[0])
        assert first["status"] == "delivered" and first["attempts"] == 1   # the interrupted attempt is not counted
        assert idempotency_key(hooks.answered(200)[0]) == first["idempotency_key"]
    finally:
        b.close()
        a.close()
        hooks.stop()


def test_a_failed_webhook_holds_its_calls_later_ones_until_another_node_retries_it(dsn):
    down = [True]
    hooks = HttpReceiver(responder=lambda req: Reply(503) if down[0] else Reply(200)).start()
    a = _outbox(dsn, "node-a", retries=1, retry_window_s=None)
    b = _outbox(dsn, "node-b", retries=1, retry_window_s=None)
    a.start()
    try:
        ids = [a.enqueue("call-1", hooks.url("/h"), "POST", {"n": str(i)}) for i in range(3)]
        wait_until(lambda: a.get_delivery(ids[0])["status"] == "failed", 10, "the first webhook failed")
        listing = b.webhooks()   # what `callfork webhooks` shows, from any node
        assert [(w["id"], w["status"]) for w in listing] == [(ids[0], "failed"), (ids[1], "held"), (ids[2], "held")]
        assert listing[0]["attempts"] == 2 and listing[0]["last_status_code"] == 503
        wait_until(lambda: (a.stats()["failed"], a.stats()["held"], a.stats()["depth"]) == (1, 2, 0), 5,
                   "the figures /metrics reads: one failed, two held, none waiting")
        down[0] = False
        b.start()
        assert b.retry_failed("call-1") == 1   # `callfork retry-webhooks` on another node
        assert b.flush(10)
        assert [r.form["n"] for r in hooks.answered(200)] == ["0", "1", "2"]
        keys = [a.get_delivery(i)["idempotency_key"] for i in ids]
        assert [idempotency_key(r) for r in hooks.answered(200)] == keys
    finally:
        a.close()
        b.close()
        hooks.stop()


def test_postgresql_stopped_for_a_while_loses_no_webhook(pg, dsn):
    held = []

    def respond(req):
        held.append(req)
        return Reply(hold=True, hold_status=200) if len(held) == 1 else Reply(200)

    hooks = HttpReceiver(responder=respond, hold_timeout=20).start()
    box = _outbox(dsn, "node-a")
    box.start()
    try:
        first = box.enqueue("call-1", hooks.url("/h"), "POST", {"n": "0"})
        assert first is not None and hooks.wait_for(lambda: len(held) == 1, 10)   # in flight when it stops
        pg.stop()
        try:
            kept = [box.enqueue("call-%d" % (i % 2 + 1), hooks.url("/h"), "POST", {"n": str(i)})
                    for i in range(1, 9)]
            assert kept == [None] * 8   # kept in memory, in order
            hooks.release()             # the attempt in flight ends while PostgreSQL is away
            wait_until(lambda: box.stats()["unsaved"] == 8 and not box.stats()["writable"], 10,
                       "the outbox says it waits for PostgreSQL")
            assert [w["status"] for w in box.webhooks(statuses=["unsaved"])] == ["unsaved"] * 8
        finally:
            pg.start()
        assert hooks.wait_for(lambda: len(hooks.answered(200)) == 9, 20)
        assert box.flush(10)
        stored = box.deliveries("call-1") + box.deliveries("call-2")
        assert len(stored) == 9 and all(d["status"] == "delivered" for d in stored)
        check_delivered_once_in_order(hooks.answered(200), sorted(stored, key=lambda d: d["id"]))
        assert [r.form["n"] for r in hooks.answered(200) if r.form["n"] in ("0", "1", "3", "5", "7")] == \
            ["0", "1", "3", "5", "7"]   # call-1's rows in enqueue order, the one in flight first
        assert box.stats()["writable"] and box.stats()["unsaved"] == 0 and box.lost == 0
    finally:
        hooks.release()
        box.close()
        hooks.stop()


def test_an_outbox_started_while_postgresql_is_away_stores_and_delivers_when_it_is_back(pg, dsn):
    hooks = HttpReceiver().start()
    pg.stop()
    try:
        box = _outbox(dsn, "node-a")
        box.start()
        assert [box.enqueue("call-1", hooks.url("/h"), "POST", {"n": str(i)}) for i in range(3)] == [None] * 3
        assert box.stats()["unsaved"] == 3 and not box.stats()["writable"]
    finally:
        pg.start()
    try:
        assert hooks.wait_for(lambda: len(hooks.answered(200)) == 3, 15)
        assert [r.form["n"] for r in hooks.answered(200)] == ["0", "1", "2"]
        assert box.flush(5) and box.stats()["writable"]
        assert [d["status"] for d in box.deliveries("call-1")] == ["delivered"] * 3
    finally:
        box.close()
        hooks.stop()


# -- kill -9 of a real `callfork serve` node --------------------------------------------------------
RETRY = {"retry_window_s": 600, "backoff_base_s": 0.05, "backoff_max_s": 0.2}
RECORDING_DOC = """<Response>
  <Record recordSession="true" fileFormat="wav" redirect="false" maxLength="60"
          action="{hooks}/rec-action" callbackUrl="{hooks}/rec-stop"/>
  <Wait length="1"/>
</Response>"""
HEADERS = {"X-Auth-ID": "MA_LOCAL", "X-Auth-Token": "test-token"}


def _node(tmp_path, name, dsn, numbers, lease_s=2):
    """A `callfork serve` node on its own simulator and ports, with the records and outbox in `dsn`."""
    ports = serve_ports()
    (tmp_path / name).mkdir()
    config = write_serve_config(tmp_path / name / "callfork.toml", ports, numbers, webhooks=RETRY)
    sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
    env = {"CALLFORK_STORE_POSTGRES_DSN": dsn, "CALLFORK_STORE_LEASE_S": str(lease_s),
           "CALLFORK_CLUSTER_NODE_ID": name}
    return ServeProcess(config, ports["http"], env=env), sim


def _api(serve, path):
    return requests.get(f"{serve.http_url}/api/v1/Account/MA_LOCAL{path}", headers=HEADERS, timeout=5)


def test_kill_9_of_a_node_with_webhooks_pending_a_second_node_delivers_them(tmp_path, dsn):
    hooks = HttpReceiver().start()
    hooks.stop()  # down while the first node runs the call
    app = AppServer().start()
    doc = app.document("/answer", RECORDING_DOC.format(hooks=hooks.url("").rstrip("/")))
    long_doc = app.document("/long", "<Response><Wait length='60'/></Response>")
    numbers = number_table(doc, hooks.url("/hangup")) + number_table(long_doc, number="2000")
    first, sim_a = _node(tmp_path, "node-a", dsn, numbers)
    second, sim_b = _node(tmp_path, "node-b", dsn, numbers)
    try:
        first.start()
        call = sim_a.place_call(CallScript(to="1000", hangup_after=30))
        call.wait(15)

        def pending():
            resp = _api(first, f"/Call/{call.uuid}/Timeline/")
            hooks_ = resp.json()["webhooks"] if resp.status_code == 200 else []
            return (len(hooks_) == 3 and all(w["status"] in ("pending", "in_flight") for w in hooks_)
                    and hooks_[0]["attempts"] >= 2)

        try:
            wait_until(pending, 10, "webhooks pending and retried", interval=0.05)
        except AssertionError:
            print(_api(first, f"/Call/{call.uuid}/Timeline/").text, first.output())
            raise
        keys = [w["idempotency_key"] for w in _api(first, f"/Call/{call.uuid}/Timeline/").json()["webhooks"]]
        live = sim_a.place_call(CallScript(to="2000", hangup_after=60))
        wait_until(lambda: _api(first, f"/Call/{live.uuid}/").status_code == 200, 10, "a live call", interval=0.05)

        second.start()   # starting, node-b closes its own stale calls, not node-a's live one
        assert _api(second, f"/Call/{live.uuid}/").json()["status"] in ("ringing", "in-progress")
        first.kill9()
        hooks.start()    # the receiver is back, node-a is not
        assert hooks.wait_for(lambda: len(hooks.answered(200)) == 3, 20), second.output()
        assert [idempotency_key(r) for r in hooks.answered(200)] == keys   # each once, in the call's order
        assert hooks.answered(200)[0].form["Event"] == "Record"

        def all_delivered():
            rec = _api(second, f"/Call/{call.uuid}/Timeline/").json()
            return rec if all(w["status"] == "delivered" for w in rec["webhooks"]) else None
        record = wait_until(all_delivered, 5, "every webhook delivered", interval=0.05)
        assert record["call"]["status"] == "completed" and record["call"]["node_id"] == "node-a"
    finally:
        first.stop()
        second.stop()
        sim_a.stop()
        sim_b.stop()
        app.stop()
        hooks.stop()


def test_kill_9_during_a_delivery_the_second_node_redelivers_it_with_the_same_key(tmp_path, dsn):
    seen = []

    def respond(req):
        seen.append(req)
        # the first attempt hangs (node-a dies meanwhile); later ones are answered
        return Reply(hold=True, hold_status=503) if len(seen) == 1 else Reply(200)

    hooks = HttpReceiver(responder=respond, hold_timeout=20).start()
    app = AppServer().start()
    doc = app.document("/answer", "<Response><Hangup/></Response>")
    numbers = number_table(doc, hooks.url("/hangup"))
    first, sim_a = _node(tmp_path, "node-a", dsn, numbers)
    second, sim_b = _node(tmp_path, "node-b", dsn, numbers)
    try:
        first.start()
        second.start()
        sim_a.place_call(CallScript(to="1000", hangup_after=30)).wait(10)
        assert hooks.wait_for(lambda: len(seen) == 1, 10)
        first.kill9()    # the Hangup webhook is in flight, leased to node-a: its outcome is unknown
        assert hooks.wait_for(lambda: len(hooks.answered(200)) == 1, 15), second.output()
        assert idempotency_key(hooks.answered(200)[0]) == idempotency_key(seen[0])   # the receiver can dedupe
        assert hooks.answered(200)[0].form == seen[0].form
        assert "whose node stopped renewing its lease are pending again" in second.output()
    finally:
        hooks.release()
        first.stop()
        second.stop()
        sim_a.stop()
        sim_b.stop()
        app.stop()
        hooks.stop()


def test_a_node_runs_its_calls_while_postgresql_is_away_and_delivers_their_webhooks_after(tmp_path, pg, dsn):
    hooks = HttpReceiver().start()
    app = AppServer().start()
    doc = app.document("/answer", "<Response><Speak>hello</Speak><Wait length='1'/></Response>")
    node, sim = _node(tmp_path, "node-a", dsn, number_table(doc, hooks.url("/hangup")))
    try:
        node.start()
        pg.stop()
        try:
            call = sim.place_call(CallScript(to="1000", hangup_after=2))
            call.wait(15)   # the call ran and ended while PostgreSQL was away
            assert app.wait_for(lambda: len(app.requests) == 1, 5)

            def kept():   # the Hangup webhook, enqueued as the call's greenlet ends, waits in memory
                resp = requests.get(node.http_url + "/healthz", timeout=5)
                return (resp.status_code, resp.json()) if resp.json()["database"]["unsaved_webhooks"] == 1 else None
            status, health = wait_until(kept, 10, "the hangup webhook kept in memory")
            assert status == 503 and health["status"] == "degraded"
            database = health["database"]
            assert not database["writable"] and database["kept_writes"] >= 1
            assert hooks.answered(200) == []
        finally:
            pg.start()
        assert hooks.wait_for(lambda: len(hooks.answered(200)) == 1, 15), node.output()
        record = wait_until(lambda: (lambda r: r if r["webhooks"] and r["webhooks"][0]["status"] == "delivered"
                                     else None)(_api(node, f"/Call/{call.uuid}/Timeline/").json()),
                            10, "the webhook delivered and recorded", interval=0.05)
        assert record["call"]["status"] == "completed" and record["call"]["node_id"] == "node-a"
        assert "verb" in [e["kind"] for e in record["timeline"]]
        assert idempotency_key(hooks.answered(200)[0]) == record["webhooks"][0]["idempotency_key"]
        wait_until(lambda: requests.get(node.http_url + "/healthz", timeout=5).status_code == 200, 10,
                   "healthy again")
    finally:
        node.stop()
        sim.stop()
        app.stop()
        hooks.stop()
