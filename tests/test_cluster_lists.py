"""Two real `callfork serve` nodes, each with its own simulator and its own SQLite, sharing a real
Redis (tests/cluster_servers.py; docs/cluster.md):
* the lists that span the cluster (callfork/cluster_lists.py): Twilio's `GET Calls.json` (through the
  `twilio` package's Client: its filters and its paging across pages) and the Vobiz `GET Conference/`
  answer every node's calls (live, and ended: tests/test_cluster_ended_calls_list.py) and rooms
  whichever node is asked; a registered node that does not
  answer does not fail them (its registry entries are listed instead, and a log line says so);
* a REST call that rings and never answers (the loopback far side runs `ring_ready` then sleeps) is
  in the registry from its creation, so a Vobiz `DELETE Call/<uuid>/` or a Twilio `Status=canceled` /
  `completed` sent to the other node reaches its node and cancels it; its entry goes when it is
  cancelled or its attempt fails (no answer within its Timeout)."""
import json

import pytest
import redis
import requests

from cluster_servers import RedisServer
from harness import AppServer, free_port
from serve_support import ServeProcess, number_table, serve_ports, write_serve_config
from switch_sim import CallScript, Simulator
from twilio_support import ACCOUNT, TOKEN, ToCallfork
from twilio.rest import Client
from verbs.twiml import call_uuid
from waiting import wait_until

AUTH = {"X-Auth-ID": ACCOUNT, "X-Auth-Token": TOKEN}
LONG_CALL = "<Response><Speak>Hello.</Speak><Wait length=\"60\"/></Response>"
RINGS_FOREVER = "loopback/m:^:set:callee={to}^ring_ready^sleep:30000/default/inline"


class Node:
    """One `callfork serve` of the cluster (auth id: a Twilio AccountSid), with its own simulator."""

    def __init__(self, tmp, name, redis_url, numbers, dial=RINGS_FOREVER):
        tmp.mkdir()
        self.name = name
        self.ports = serve_ports()
        config = write_serve_config(tmp / "callfork.toml", self.ports, numbers)
        self.sim = Simulator(esl=("127.0.0.1", self.ports["esl"]),
                             socket_target=("127.0.0.1", self.ports["outbound"])).start()
        self.serve = ServeProcess(config, self.ports["http"], env={
            "CALLFORK_SERVER_AUTH_ID": ACCOUNT, "CALLFORK_FREESWITCH_ORIGINATE_DIALSTRING": dial,
            "CALLFORK_CLUSTER_REDIS_URL": redis_url, "CALLFORK_CLUSTER_NODE_ID": name,
            "CALLFORK_CLUSTER_HEARTBEAT_S": "0.3", "CALLFORK_CLUSTER_NODE_TTL_S": "2"})
        self.url = self.serve.http_url
        self.twilio = Client(ACCOUNT, TOKEN, http_client=ToCallfork(self.url))

    def api(self, method, path, **kw):
        headers = dict(AUTH, **kw.pop("headers", {}))
        return requests.request(method, f"{self.url}/api/v1/Account/{ACCOUNT}{path}", headers=headers, timeout=20,
                                **kw)

    def call(self, to, from_="15551230001"):
        return self.sim.place_call(CallScript(to=to, from_=from_, hangup_after=60))

    def stop(self):
        self.serve.stop()
        self.sim.stop()


def _cluster(tmp_path, dial=RINGS_FOREVER):
    app = AppServer().start()
    # 3xxx join the conference room "room-<number>"; any other number runs a long call
    app.document("/answer", lambda req: (
        f'<Response><Conference beep="false" stayAlone="true">room-{req.form["To"]}</Conference></Response>'
        if req.form.get("To", "").startswith("3") else LONG_CALL))
    numbers = number_table(app.url("/answer"), app.url("/hangup"))
    with RedisServer() as server:
        nodes = [Node(tmp_path / name, name, server.url, numbers, dial) for name in ("node-a", "node-b")]
        try:
            for node in nodes:
                node.serve.start()
            yield app, nodes[0], nodes[1], redis.Redis.from_url(server.url, decode_responses=True)
        finally:
            for node in nodes:
                node.stop()
            app.stop()


@pytest.fixture
def cluster(tmp_path):
    yield from _cluster(tmp_path)


# the far side does what the call's `to` says: `sleep:30000` rings on, `answer` answers
FAR_SIDE_BY_TO = "loopback/m:^:ring_ready^{to}^park/default/inline"


@pytest.fixture
def answering_cluster(tmp_path):
    yield from _cluster(tmp_path, FAR_SIDE_BY_TO)


def _entry(db, uuid) -> dict:
    return json.loads(db.hget("callfork:calls", uuid) or "{}")


def _sid(uuid: str) -> str:
    return "CA" + uuid.replace("-", "")


def _silent_node(db, calls=(), rooms=()):
    """A node registered in Redis whose advertise_url nobody listens on, owning `calls` and `rooms`."""
    closed = free_port()
    db.hset("callfork:node:silent", mapping={"id": "silent", "advertise_url": f"http://127.0.0.1:{closed}",
                                             "heartbeat_at": "0"})
    db.expire("callfork:node:silent", 120)
    db.sadd("callfork:nodes", "silent")
    for uuid, to in calls:
        db.hset("callfork:calls", uuid, json.dumps({"node": "silent", "direction": "inbound", "to_number": to,
                                                    "from_number": "15550009999", "status": "in-progress",
                                                    "start_time": 1.0, "answer_time": 1.0}))
    for room in rooms:
        db.hset("callfork:rooms", room, json.dumps({"node": "silent"}))


def test_twilio_calls_and_conference_lists_span_the_cluster(cluster):
    app, a, b, db = cluster
    on_a = [a.call("1000"), a.call("1001", from_="15557770000")]
    on_b = [b.call("1002")]
    rooms = [a.call("3001"), b.call("3002")]
    everyone = on_a + on_b + rooms
    wait_until(lambda: all(_entry(db, c.uuid).get("status") == "in-progress" for c in everyone), 15,
               "every call live in the registry", interval=0.05)
    wait_until(lambda: set(db.hkeys("callfork:rooms")) == {"room-3001", "room-3002"}, 15, "both rooms registered")
    sids = {_sid(c.uuid) for c in everyone}

    for node in (a, b):
        listed = node.twilio.calls.list()
        assert {c.sid for c in listed} == sids, node.name
        assert [c.date_created for c in listed] == sorted((c.date_created for c in listed), reverse=True)
        # filters, whichever node holds the call
        assert [c.sid for c in node.twilio.calls.list(to="1001")] == [_sid(on_a[1].uuid)]
        assert [c.sid for c in node.twilio.calls.list(from_="+15557770000")] == [_sid(on_a[1].uuid)]
        assert {c.sid for c in node.twilio.calls.list(status="in-progress")} == sids
        assert node.twilio.calls.list(status="completed") == []
        # paging across the nodes' calls; the package follows next_page_uri through pages of two
        first = requests.get(f"{node.url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json", params={"PageSize": 2},
                             auth=(ACCOUNT, TOKEN), timeout=10).json()
        assert len(first["calls"]) == 2 and first["next_page_uri"].endswith("PageSize=2&Page=1"), first
        last = requests.get(f"{node.url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json", params={"PageSize": 2, "Page": 2},
                            auth=(ACCOUNT, TOKEN), timeout=10).json()
        assert len(last["calls"]) == 1 and last["next_page_uri"] is None and last["start"] == 4, last
        assert [c.sid for c in node.twilio.calls.list(page_size=2)] == [c.sid for c in listed]
        rooms_seen = node.api("GET", "/Conference/")
        assert rooms_seen.status_code == 200 and rooms_seen.json()["conferences"] == ["room-3001", "room-3002"]

    # asked by another node (the hop header): a node's own live calls and rooms only
    own = requests.get(f"{a.url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json", auth=(ACCOUNT, TOKEN), timeout=10,
                       headers={"X-Callfork-Forwarded-By": "node-b"}).json()["calls"]
    assert {c["sid"] for c in own} == {_sid(c.uuid) for c in on_a + rooms[:1]}
    own_rooms = a.api("GET", "/Conference/", headers={"X-Callfork-Forwarded-By": "node-b"}).json()["conferences"]
    assert own_rooms == ["room-3001"]

    # a call that ended on A is out of the registry, and B lists it as completed (A's record of it)
    on_a[0].channel.hangup("NORMAL_CLEARING")
    wait_until(lambda: not db.hexists("callfork:calls", on_a[0].uuid), 10, "the ended call out of the registry")
    wait_until(lambda: [c.status for c in b.twilio.calls.list() if c.sid == _sid(on_a[0].uuid)] == ["completed"],
               10, "the ended call listed as completed by node-b")

    # a node that does not answer fails nothing: its registry entries are listed, and it is logged
    ghost = "11111111-2222-3333-4444-555555555555"
    _silent_node(db, calls=[(ghost, "1999")], rooms=["room-silent"])
    listed = b.twilio.calls.list()
    assert _sid(ghost) in {c.sid for c in listed}
    assert [c.to for c in listed if c.sid == _sid(ghost)] == ["1999"]
    assert listed[-1].sid == _sid(ghost)   # (it started in 1970)
    assert b.api("GET", "/Conference/").json()["conferences"] == ["room-3001", "room-3002", "room-silent"]
    wait_until(lambda: "node silent at http://127.0.0.1:" in b.serve.output()
               and "its 1 live calls listed from the registry" in b.serve.output()
               and "its 1 rooms listed from the registry" in b.serve.output(), 5, "node-b logged it")


def test_a_ringing_rest_call_is_cancelled_through_the_other_node(cluster):
    app, a, b, db = cluster

    # Vobiz: POST Call/ on A; B finds it in the registry (not in its live list: it is not live yet)
    resp = a.api("POST", "/Call/", json={"from": "15551230001", "to": "15551230002", "answer_url": app.url("/never"),
                                         "hangup_url": app.url("/vobiz-hangup"), "ring_timeout": 60})
    assert resp.status_code == 201, resp.text
    uuid = wait_until(lambda: next((u for u, raw in db.hgetall("callfork:calls").items()
                                    if json.loads(raw)["node"] == "node-a"), None), 5, "the call registered")
    assert _entry(db, uuid)["status"] == "queued" and _entry(db, uuid)["placing"] is True
    assert b.api("GET", "/Call/").json()["objects"] == []
    cancel = b.api("DELETE", f"/Call/{uuid}/")
    assert cancel.status_code == 204 and cancel.headers["X-Callfork-Served-By"] == "node-a", cancel.text
    hangup = app.wait_path("/vobiz-hangup", timeout=10)[0].form
    assert hangup["CallUUID"] == uuid and hangup["HangupCause"] == "ORIGINATOR_CANCEL", hangup
    wait_until(lambda: not db.hexists("callfork:calls", uuid), 5, "the cancelled call out of the registry")
    assert b.api("DELETE", f"/Call/{uuid}/").status_code == 404
    wait_until(lambda: not a.sim.channels, 5, "the call's channels gone")
    assert not [r for r in app.requests if r.path == "/never"]

    # Twilio: created on A, ringing; B lists it, then Status=canceled / completed through B ends it
    for status in ("canceled", "completed"):
        call = a.twilio.calls.create(to="+15551230002", from_="+15551230001", url=app.url("/never"),
                                     timeout=60, status_callback=app.url(f"/status-{status}"),
                                     status_callback_event=["ringing", "completed"])
        uuid = call_uuid(call.sid)
        wait_until(lambda: _entry(db, uuid).get("status") == "ringing", 10, "ringing in the registry")
        assert [(c.sid, c.status) for c in b.twilio.calls.list(status="ringing")] == [(call.sid, "ringing")]
        assert b.twilio.calls(call.sid).update(status=status).status == "canceled"
        forms = [r.form for r in app.wait_path(f"/status-{status}", timeout=10, count=2)]
        assert [f["CallStatus"] for f in forms] == ["ringing", "canceled"], forms
        wait_until(lambda: not db.hexists("callfork:calls", uuid), 5, "the cancelled call out of the registry")
        wait_until(lambda: call.sid in {c.sid for c in b.twilio.calls.list(status="canceled")}, 10,
                   "the cancelled call listed as canceled by node-b")
        assert b.twilio.calls.list(status="ringing") == []

    # an attempt that fails (nobody answers within the Timeout) leaves the registry too
    call = a.twilio.calls.create(to="+15551230002", from_="+15551230001", url=app.url("/never"), timeout=5,
                                 status_callback=app.url("/status-timeout"), status_callback_event=["completed"])
    uuid = call_uuid(call.sid)
    wait_until(lambda: db.hexists("callfork:calls", uuid), 5, "registered")
    assert app.wait_path("/status-timeout", timeout=20)[0].form["CallStatus"] == "no-answer"
    wait_until(lambda: not db.hexists("callfork:calls", uuid), 5, "the failed call out of the registry")


def test_a_call_request_is_hung_up_through_the_other_node(answering_cluster):
    """Plivo's `DELETE Request/<request_uuid>/` sent to node B for a call node A placed: the registry
    entry carries the request UUID while the call rings and once it runs, so B carries it to A."""
    app, a, b, db = answering_cluster
    app.document("/long", LONG_CALL)

    def place(to):
        resp = a.api("POST", "/Call/", json={"from": "15551230001", "to": to, "answer_url": app.url("/long"),
                                             "hangup_url": app.url("/request-hangup")})
        assert resp.status_code == 201, resp.text
        return resp.json()["request_uuid"]

    def hangup_of(request_uuid):
        return wait_until(lambda: next((r.form for r in app.requests if r.path == "/request-hangup"
                                        and r.form.get("RequestUUID") == request_uuid), None), 10, "its Hangup")

    ringing = place("sleep:30000")
    wait_until(lambda: any(json.loads(raw).get("request_uuid") == ringing for raw in db.hvals("callfork:calls")),
               5, "the ringing call registered with its request uuid")
    resp = b.api("DELETE", f"/Request/{ringing}/")
    assert resp.status_code == 204 and resp.headers["X-Callfork-Served-By"] == "node-a", resp.text
    assert hangup_of(ringing)["HangupCause"] == "ORIGINATOR_CANCEL"

    running = place("answer")
    app.wait_path("/long", timeout=10)
    uuid = wait_until(lambda: next((u for u, raw in db.hgetall("callfork:calls").items()
                                    if json.loads(raw).get("request_uuid") == running
                                    and json.loads(raw).get("status") == "in-progress"), None), 10,
                      "the running call registered with its request uuid")
    resp = b.api("DELETE", f"/Request/{running}/")
    assert resp.status_code == 204 and resp.headers["X-Callfork-Served-By"] == "node-a", resp.text
    hangup = hangup_of(running)
    assert hangup["CallUUID"] == uuid and hangup["HangupCause"] == "NORMAL_CLEARING", hangup
    wait_until(lambda: not db.hexists("callfork:calls", uuid), 5, "the call out of the registry")
    # over: 404 from either node, and an unknown request too
    assert b.api("DELETE", f"/Request/{running}/").status_code == 404
    assert a.api("DELETE", f"/Request/{running}/").status_code == 404
    assert b.api("DELETE", "/Request/00000000-0000-0000-0000-000000000000/").status_code == 404
