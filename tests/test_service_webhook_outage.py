"""Nothing lost, at the service level (README, Webhooks; docs/internals.md, webhooks): a webhook that
ran out of retries holds its call's later ones until `callfork retry-webhooks` (and `callfork
webhooks` and /metrics show the queue, failures per host and receivers that are down); a database
that refuses writes (its size cap, `[server] db_max_mb`, reached: SQLITE_FULL) lets calls go on,
keeps their webhooks and records in memory, says so on /healthz and /metrics, and writes and
delivers everything once it takes writes again; and `callfork serve` killed with -9 twice while a
receiver is down delivers every webhook once per key, in per-call order, when it is back."""
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import requests

from harness import AppServer, Stack
from http_receiver import HttpReceiver, Reply
from serve_support import (ServeProcess, check_delivered_once_in_order, number_table, serve_ports,
                           write_serve_config)
from switch_sim import CallScript, Simulator
from waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
RECORDING_DOC = """<Response>
  <Record recordSession="true" fileFormat="wav" redirect="false" maxLength="60"
          action="{hooks}/rec-action" callbackUrl="{hooks}/rec-stop"/>
  <Wait length="1"/>
</Response>"""


def _cli(*args, port):
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="250", CALLFORK_SERVER_HTTP_LISTEN=f"127.0.0.1:{port}",
               CALLFORK_SERVER_AUTH_TOKEN="test-token")
    env.pop("CALLFORK_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "callfork.cli", *args], env=env, capture_output=True, text=True,
                          timeout=30)


def _metrics(stack):
    return requests.get(f"{stack.http_url}/metrics", timeout=5).text.splitlines()


def test_a_failed_webhook_holds_the_calls_later_ones_and_ops_see_the_queue():
    up = {"action": False}

    def respond(req):
        return Reply(503 if req.path == "/rec-action" and not up["action"] else 200)
    hooks = HttpReceiver(respond).start()
    busy = HttpReceiver(lambda req: Reply(503, headers={"Retry-After": "30"})).start()
    env = {"CALLFORK_WEBHOOKS_RETRY_MODE": "vobiz", "CALLFORK_WEBHOOKS_RETRIES": "1"}
    try:
        with Stack(env=env) as stack:
            port = stack.http_url.rsplit(":", 1)[1]
            base = hooks.url("").rstrip("/")
            stack.app.document("/answer", RECORDING_DOC.format(hooks=base))
            stack.app.document("/hangup", lambda req: Reply(503) if not up["action"] else Reply(200))
            stack.app.document("/short", "<Response><Hangup/></Response>")
            # the Record action fails (two 503s); the call's Hangup and RecordStop must not overtake it
            call = stack.call(to="1000")
            call.wait(15)
            uuid = call.uuid
            outbox = stack.service.outbox
            stack.wait(lambda: [d["status"] for d in outbox.deliveries(uuid)] == ["failed", "held", "held"], 15)
            assert [d["event"] for d in outbox.deliveries(uuid)] == ["Record", "Hangup", "RecordStop"]
            assert [r.path for r in hooks.requests] == ["/rec-action", "/rec-action"]
            assert stack.app.events("Hangup") == []
            # a REST call whose hangup receiver is busy for 30 s: its webhook waits, its host is down
            resp = requests.post(stack.api_url("/Call/"), headers=stack.api_headers(), timeout=10, json={
                "from": "15551230001", "to": "2000", "answer_url": stack.app.url("/short"),
                "hangup_url": busy.url("/hangup")})
            assert resp.status_code == 201
            stack.wait(lambda: outbox.stats()["hosts_down"], 15)

            listing = _cli("webhooks", "--json", port=port)
            assert listing.returncode == 0, listing.stderr
            data = json.loads(listing.stdout)
            assert [(w["event"], w["status"]) for w in data["objects"] if w["call_uuid"] == uuid] == [
                ("Record", "failed"), ("Hangup", "held"), ("RecordStop", "held")]
            assert data["objects"][0]["last_error"] == "gave up after 2 attempt(s): HTTP 503"
            assert data["summary"]["depth"] == 1 and data["summary"]["held"] == 2
            assert data["summary"]["failed_by_host"] == {f"127.0.0.1:{hooks.port}": 1}
            assert list(data["summary"]["hosts_down"]) == [f"127.0.0.1:{busy.port}"]
            assert data["summary"]["hosts_down"][f"127.0.0.1:{busy.port}"]["next_try_in_s"] > 20
            table = _cli("webhooks", port=port)
            assert table.returncode == 0 and "held" in table.stdout and "RecordStop" in table.stdout
            assert f"receiver 127.0.0.1:{busy.port} is down" in table.stdout
            failed_only = json.loads(_cli("webhooks", "--json", "--status", "failed", port=port).stdout)
            assert [w["event"] for w in failed_only["objects"]] == ["Record"]

            metrics = _metrics(stack)
            assert "callfork_webhook_queue_depth 1" in metrics and "callfork_webhook_held 2" in metrics
            assert f'callfork_webhook_host_failed{{host="127.0.0.1:{hooks.port}"}} 1' in metrics
            assert f'callfork_webhook_host_down{{host="127.0.0.1:{busy.port}"}} 1' in metrics
            age = [m for m in metrics if m.startswith("callfork_webhook_oldest_pending_age_seconds ")]
            assert float(age[0].split()[1]) > 0

            up["action"] = True        # the receiver is fixed: the failed one goes first, then the held ones
            retried = _cli("retry-webhooks", uuid, port=port)
            assert retried.returncode == 0 and "1 failed webhooks queued again" in retried.stdout
            stack.wait(lambda: [d["status"] for d in outbox.deliveries(uuid)] == ["delivered"] * 3, 15)
            assert [r.form["Event"] for r in hooks.answered(200)] == ["Record", "RecordStop"]
            assert hooks.answered(200)[0].received_at <= stack.app.events("Hangup")[0].received_at
            assert stack.app.events("Hangup")[0].received_at <= \
                [r for r in hooks.answered(200) if r.path == "/rec-stop"][0].received_at
    finally:
        busy.stop()
        hooks.stop()


def _fill(path, mb):
    """Another connection takes `mb` MB of the file (callfork's own size cap does not bind it)."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE filler (x BLOB)")
        conn.executemany("INSERT INTO filler VALUES (?)", [(b"x" * 65536,)] * int(mb * 16))
    conn.close()


def _unfill(path):
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DROP TABLE filler")   # its pages go to the free list: room again
    conn.close()


def test_a_full_database_keeps_calls_going_and_their_webhooks_until_it_frees():
    hooks = HttpReceiver().start()
    try:
        with Stack(env={"CALLFORK_SERVER_DB_MAX_MB": "1"}) as stack:
            db = str(stack.data_dir / "callfork.sqlite3")
            stack.app.document("/answer", RECORDING_DOC.format(hooks=hooks.url("").rstrip("/")))
            _fill(db, 1.5)      # the file is past the 1 MB cap: SQLite answers SQLITE_FULL

            def refusing():
                return stack.service.outbox.stats()["unsaved"] and not stack.service.store.health()["writable"]
            calls = []
            for _ in range(5):     # what still fits in pages the file has takes a call or two
                calls.append(stack.call(to="1000"))
                assert calls[-1].wait(15)["answered"] is True
                stack.wait(lambda: not stack.service.calls, 10)
                if refusing():
                    break
            assert refusing()
            later = [stack.call(to="1000") for _ in range(2)]    # new calls while the disk is full
            summaries = [c.wait(15) for c in later]
            assert all(s["answered"] is True for s in summaries)
            calls += later
            stack.wait(lambda: not stack.service.calls, 10)
            unsaved = stack.service.outbox.stats()["unsaved"]
            assert unsaved >= 6                                  # the later calls' three each, at least

            health = requests.get(f"{stack.http_url}/healthz", timeout=5)
            assert health.status_code == 503
            body = health.json()
            assert body["status"] == "degraded" and body["database"]["writable"] is False
            assert "full" in body["database"]["error"] and body["database"]["unsaved_webhooks"] == unsaved
            assert any("refuses writes" in p for p in body["problems"])
            metrics = _metrics(stack)
            assert "callfork_database_writable 0" in metrics and f"callfork_webhook_unsaved {unsaved}" in metrics
            timeline = requests.get(stack.api_url(f"/Call/{later[0].uuid}/Timeline/"), headers=stack.api_headers(),
                                    timeout=5)
            assert timeline.status_code == 404 or \
                {w["status"] for w in timeline.json()["webhooks"]} == {"unsaved"}

            _unfill(db)         # the disk frees: everything is written, then delivered
            stack.wait(lambda: stack.service.outbox.stats()["unsaved"] == 0 and
                       stack.service.store.health()["writable"], 10)
            outbox = stack.service.outbox
            deliveries = [d for c in calls for d in outbox.deliveries(c.uuid)]
            assert len(deliveries) == 3 * len(calls)
            assert outbox.flush(15)
            check_delivered_once_in_order(hooks_and_app(hooks, stack.app).answered(200), deliveries)
            for c in calls:
                assert stack.service.store.get_call(c.uuid)["status"] == "completed"
            assert requests.get(f"{stack.http_url}/healthz", timeout=5).json()["database"]["writable"] is True
    finally:
        hooks.stop()


class hooks_and_app:
    """The webhooks two receivers answered, in arrival order (for check_delivered_once_in_order)."""

    def __init__(self, *receivers):
        self.receivers = receivers

    def answered(self, status=200):
        got = [r for rec in self.receivers for r in rec.answered(status) if "x-callfork-idempotency-key" in r.headers]
        return sorted(got, key=lambda r: r.received_at)


# -- kill -9, twice, while the receiver is down: real `callfork serve` processes -----------------------
RETRY = {"retry_window_s": 600, "backoff_base_s": 0.05, "backoff_max_s": 0.3}


def _rows(db):
    conn = sqlite3.connect(db)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT id, call_uuid, event, idempotency_key, status FROM outbox "
                                              "ORDER BY id")]
    finally:
        conn.close()


def test_kill_9_twice_while_the_receiver_is_down_then_everything_once_in_order(tmp_path):
    ports = serve_ports()
    hooks = HttpReceiver().start()
    hooks.stop()    # down for the whole run of the first two processes
    app = AppServer().start()
    doc = app.document("/answer", RECORDING_DOC.format(hooks=hooks.url("").rstrip("/")))
    config = write_serve_config(tmp_path / "callfork.toml", ports, number_table(doc, hooks.url("/hangup")),
                                webhooks=RETRY)
    db = str(tmp_path / "var" / "callfork.sqlite3")
    sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
    processes = []
    try:
        for round_ in range(2):
            serve = ServeProcess(config, ports["http"]).start()
            processes.append(serve)
            before = len(_rows(db))
            calls = [sim.place_call(CallScript(to="1000", hangup_after=30)) for _ in range(6)]
            for call in calls:
                assert call.wait(20)["answered"] is True
            # every call's three webhooks stored (Record, Hangup, RecordStop), the heads retried
            wait_until(lambda: len(_rows(db)) == before + 18, 15, "the webhooks stored", interval=0.1)
            wait_until(lambda: any(r["status"] == "pending" for r in _rows(db)), 5, "retrying", interval=0.05)
            serve.kill9()
        rows = _rows(db)
        assert len(rows) == 36 and not any(r["status"] == "delivered" for r in rows)

        hooks.start()   # the receiver is back; then callfork
        serve = ServeProcess(config, ports["http"]).start()
        processes.append(serve)
        wait_until(lambda: all(r["status"] == "delivered" for r in _rows(db)), 30, "everything delivered",
                   interval=0.2)
        rows = _rows(db)
        assert not hooks.wait_for(lambda: len(hooks.requests) > 36, 0.5)
        assert len(hooks.requests) == 36
        check_delivered_once_in_order(hooks.answered(200), rows)
        assert {r["event"] for r in rows} == {"Record", "Hangup", "RecordStop"}
    finally:
        for serve in processes:
            serve.stop()
        sim.stop()
        app.stop()
        hooks.stop()
