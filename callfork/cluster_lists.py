"""REST lists that span the cluster (issue 15; docs/cluster.md) where no shared store has them:
Twilio's `GET Calls.json` when each node keeps its own records (SQLite, no [store] postgres_dsn:
callfork/twilio_api.py), and the Vobiz `GET Conference/` in any cluster (a room lives on its node's
FreeSWITCH, in no store: callfork/conference_api.py). Each API shapes its own answers; what they
share is here.

`collect` asks other live nodes of the registry (cluster/registry.py) once each, all at once, for
their own list: the nodes that own entries of the list in the registry (calls or rooms), or every
other live node (`every_node`, for a list of records that outlive the registry's entries, as ended
calls do). Each is asked the same path on its advertise_url, with this request's query, headers and
credentials (as callfork/forwarding.py carries a request; the owner checks them) and
`X-Callfork-Forwarded-By`, which makes a node answer with its own list only (`carried`). A node that
does not answer within TIMEOUT_S, or answers other than 200 with JSON, does not fail the list: its
registry entries stand in for its answer, and one log line names the node, what went wrong and how
many entries stood in. While Redis is away a list is this node's own (the registry logged the outage).
"""
from __future__ import annotations

import logging
from urllib.parse import quote

import gevent
import requests
from flask import request

from cluster import RegistryUnavailable

from .forwarding import DROPPED_REQUEST, HOP_HEADER

log = logging.getLogger("callfork.forwarding")

TIMEOUT_S = (2.0, 5.0)   # connect, read: a node's own list is read from memory and its store


def carried(service) -> bool:
    """Did another node of the cluster ask for this list (so: answer with this node's own)?"""
    return getattr(service, "cluster", None) is not None and bool(request.headers.get(HOP_HEADER))


def collect(service, client, what: str, entries, answered, stand_in, every_node: bool = False) -> list:
    """The other nodes' parts of a list, joined. `entries(registry)`: (node id, entry) of the
    registry's entries of the list (this node's are left out here); `answered(answer, entries)`: the
    part of a node that answered (its JSON dict; its registry entries); `stand_in(entries)`: the part
    of a node that did not. `what` names the entries in the log line. [] while Redis is away."""
    node = service.cluster
    try:
        owned: dict[str, list] = {}
        for node_id, entry in entries(node.registry):
            if node_id != node.node_id:
                owned.setdefault(node_id, []).append(entry)
        nodes = {n.id: n for n in node.registry.nodes()} if owned or every_node else {}
    except RegistryUnavailable:
        return []
    if every_node:
        for node_id in nodes:
            if node_id != node.node_id:
                owned.setdefault(node_id, [])
    answers = _ask(node, client, nodes, owned, what)
    out: list = []
    for node_id, mine in owned.items():
        answer = answers.get(node_id)
        out += answered(answer, mine) if answer is not None else stand_in(mine)
    return out


def _ask(cluster_node, client, nodes: dict, owned: dict, what: str) -> dict:
    """Ask each node of `owned` (node id -> the registry's entries of its part) for this request's
    path, with its query and credentials. -> node id -> the node's JSON answer, or None when it gave
    none (logged)."""
    if not owned:
        return {}
    path = quote(request.path, safe="/:@!$&'()*+,;=-._~")
    query = request.query_string.decode("latin-1")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in DROPPED_REQUEST}
    headers[HOP_HEADER] = cluster_node.node_id

    def ask(node_id: str):
        node = nodes.get(node_id)
        if node is None:
            return f"node {node_id} is not registered any more"
        url = node.advertise_url + path + (f"?{query}" if query else "")
        try:
            resp = client.get(url, headers=headers, timeout=TIMEOUT_S, allow_redirects=False)
        except requests.RequestException as exc:
            return f"node {node_id} at {node.advertise_url} did not answer ({exc!r})"
        if resp.status_code != 200:
            return f"node {node_id} at {node.advertise_url} answered {resp.status_code}: {resp.text[:200]!r}"
        try:
            return resp.json()
        except ValueError:
            return f"node {node_id} at {node.advertise_url} answered no JSON: {resp.text[:200]!r}"

    jobs = {node_id: gevent.spawn(ask, node_id) for node_id in owned}
    gevent.joinall(list(jobs.values()))
    out = {}
    for node_id, job in jobs.items():
        answer = job.value if job.successful() else f"node {node_id}: {job.exception!r}"
        if isinstance(answer, dict):
            out[node_id] = answer
            continue
        log.warning("%s %s: %s: its %d %s listed from the registry", request.method, request.path, answer,
                    len(owned[node_id]), what)
        out[node_id] = None
    return out
