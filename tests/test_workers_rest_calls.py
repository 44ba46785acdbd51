"""REST calls with `callfork serve --workers 2` (callfork/workers.py, callfork/originate.py): a call a
worker places through `POST Call/` comes back to the socket app port that every worker shares
(SO_REUSEPORT): whichever worker the kernel hands it to, the call must run the document its request
named (answer_url), not the [[numbers]] one. On the simulator, with a real Redis and PostgreSQL
(tests/cluster_servers.py)."""
import re

import requests

from cluster_servers import PostgresServer, RedisServer
from harness import AppServer
from serve_support import ServeProcess, number_table, serve_ports, write_serve_config
from switch_sim import Simulator
from waiting import wait_until

DIAL = "loopback/m:^:ring_ready^{to}^park/default/inline"
AUTH = {"X-Auth-ID": "MA_LOCAL", "X-Auth-Token": "test-token"}
CALLS = 8   # each lands on a worker by the kernel's hash: all on the placing one is 1 in 2**8


def test_rest_calls_placed_by_either_worker_run_their_own_document(tmp_path):
    ports = dict(serve_ports(), relay=0)
    app = AppServer().start()
    app.document("/rest-answer", "<Response><Wait length=\"60\"/></Response>")
    numbers = number_table(app.document("/inbound", "<Response><Hangup/></Response>"))
    with RedisServer() as redis_server, PostgresServer() as pg:
        sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
        config = write_serve_config(tmp_path / "callfork.toml", ports, numbers, server=(
            f'workers = 2\n[cluster]\nredis_url = "{redis_server.url}"\n[store]\npostgres_dsn = "{pg.dsn}"\n'))
        serve = ServeProcess(config, ports["http"], env={"CALLFORK_FREESWITCH_ORIGINATE_DIALSTRING": DIAL})
        try:
            serve.start(timeout=30)
            wait_until(lambda: len(re.findall(r"callfork\.service: callfork \S+: FreeSWITCH socket app",
                                              serve.output())) == 2, 20, "both workers serving", interval=0.1)
            placed = []
            for i in range(CALLS):
                resp = requests.post(f"{serve.http_url}/api/v1/Account/MA_LOCAL/Call/", headers=AUTH, timeout=10,
                                     json={"from": "15551230001", "to": "answer",
                                           "answer_url": app.url("/rest-answer")})
                assert resp.status_code == 201, resp.text
                placed.append(resp.json()["request_uuid"])
            wait_until(lambda: len([r for r in app.requests if r.path in ("/rest-answer", "/inbound")]) >= CALLS,
                       20, "every call asked its app", interval=0.1)
            asked = [r.form for r in app.requests if r.path == "/rest-answer"]
            assert sorted(f["RequestUUID"] for f in asked) == sorted(placed), serve.output()
            assert not [r for r in app.requests if r.path == "/inbound"], serve.output()
        finally:
            serve.stop()
            sim.stop()
            app.stop()
