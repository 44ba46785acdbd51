"""Twilio's `GET Calls.json` in a cluster whose nodes keep their own records (SQLite, no [store]
postgres_dsn): every live node is asked for its own calls, ended ones included, not only the nodes
that own live calls in the registry (callfork/cluster_lists.py, docs/cluster.md). Two real `callfork
serve` nodes, each with its own simulator and SQLite, one real Redis (the set-up of
tests/test_cluster_lists.py); the lists are read through the `twilio` package's Client pointed at
node A."""
import requests

from test_cluster_lists import ACCOUNT, TOKEN, _entry, _sid, _silent_node, cluster  # noqa: F401 (a fixture)
from waiting import wait_until


def _calls_json(node, headers=None, **params):
    resp = requests.get(f"{node.url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json", params=params,
                        auth=(ACCOUNT, TOKEN), timeout=10, headers=headers or {})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_the_other_nodes_ended_calls_are_listed_and_paged(cluster):
    app, a, b, db = cluster
    # placed one after the other, alternating nodes, so that newest first interleaves them
    placed = []
    for node, to in ((b, "1001"), (a, "1002"), (b, "1003"), (a, "1004"), (b, "1005")):
        call = node.call(to)
        wait_until(lambda: _entry(db, call.uuid).get("status") == "in-progress", 15, f"call to {to} live")
        placed.append((node, call))
    # every call of B ends, and the first of A: B then owns no live call in the registry
    ended = [call for node, call in placed if node is b] + [placed[1][1]]
    for call in ended:
        call.channel.hangup("NORMAL_CLEARING")
    for call in ended:
        wait_until(lambda: not db.hexists("callfork:calls", call.uuid), 10, "the ended call out of the registry")
    for node, call in placed:
        if call in ended:
            wait_until(lambda: node.twilio.calls(_sid(call.uuid)).fetch().status == "completed", 10,
                       "the ended call's record closed on its node")
    assert not [raw for raw in db.hvals("callfork:calls") if '"node-b"' in raw]

    newest_first = [_sid(call.uuid) for _node, call in reversed(placed)]
    listed = a.twilio.calls.list()
    assert [c.sid for c in listed] == newest_first
    assert {c.sid: c.status for c in listed} == {
        _sid(call.uuid): "completed" if call in ended else "in-progress" for _node, call in placed}
    # B's ended call through A, as Twilio shows a completed call
    b_first = next(c for c in listed if c.sid == _sid(placed[0][1].uuid))
    assert b_first.to == "1001" and b_first.end_time is not None and b_first.duration is not None
    # filters across both nodes
    assert [c.sid for c in a.twilio.calls.list(status="completed")] == [s for s in newest_first if s in
                                                                       {_sid(c.uuid) for c in ended}]
    assert [c.sid for c in a.twilio.calls.list(to="1003")] == [_sid(placed[2][1].uuid)]
    # paging: the package follows next_page_uri through pages of two; the pages by hand
    assert [c.sid for c in a.twilio.calls.list(page_size=2)] == newest_first
    pages = [_calls_json(a, PageSize=2, Page=n) for n in range(3)]
    assert [[c["sid"] for c in p["calls"]] for p in pages] == [newest_first[0:2], newest_first[2:4], newest_first[4:]]
    assert pages[0]["next_page_uri"].endswith("PageSize=2&Page=1") and pages[2]["next_page_uri"] is None
    assert [p["start"] for p in pages] == [0, 2, 4]
    # B lists the same, from its side
    assert [c.sid for c in b.twilio.calls.list(page_size=3)] == newest_first

    # asked by another node (the hop header): B's own calls that pass the filters, as many as
    # the pages up to the one asked for hold, plus one, newest first, with their start times
    part = _calls_json(b, PageSize=1, Page=0, headers={"X-Callfork-Forwarded-By": "node-a"})
    b_newest = [_sid(call.uuid) for node, call in reversed(placed) if node is b]
    assert [c["sid"] for c in part["calls"]] == b_newest[:2]
    assert len(part["start_times"]) == 2 and part["start_times"][0] > part["start_times"][1]
    part = _calls_json(b, To="1003", headers={"X-Callfork-Forwarded-By": "node-a"})
    assert [c["sid"] for c in part["calls"]] == [_sid(placed[2][1].uuid)]

    # a registered node that does not answer (and owns no call) fails nothing, and is logged
    _silent_node(db)
    assert [c.sid for c in a.twilio.calls.list()] == newest_first
    wait_until(lambda: "node silent at http://127.0.0.1:" in a.serve.output()
               and "its 0 live calls listed from the registry" in a.serve.output(), 5, "node-a logged it")
