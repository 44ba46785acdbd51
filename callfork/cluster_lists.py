"""REST lists that span the cluster (issue 15; docs/cluster.md) where no shared store has them:
Twilio's `GET Calls.json` when each node keeps its own records (SQLite, no [store] postgres_dsn:
callfork/twilio_api.py), and the Vobiz `GET Conference/` in any cluster (a room lives on its node's
FreeSWITCH, in no store: callfork/conference_api.py).

The registry (cluster/registry.py) says which other live nodes own calls or rooms; `gather` asks
each of them once, all at once, for its own: the same path on its advertise_url, with this request's
headers and credentials (as callfork/forwarding.py carries a request; the owner checks them) and
`X-Callfork-Forwarded-By`, which makes a node answer with its own calls or rooms only (`carried`).
A node that does not answer within TIMEOUT_S, or answers other than 200 with JSON, does not fail the
list: the caller lists what the registry holds of it instead, and one log line names the node, what
went wrong and how many entries stood in for its answer. While Redis is away a list is this node's
own (the registry logged the outage).
"""
from __future__ import annotations

import logging
from urllib.parse import quote

import gevent
import requests
from flask import request

from .forwarding import DROPPED_REQUEST, HOP_HEADER

log = logging.getLogger("callfork.forwarding")

TIMEOUT_S = (2.0, 5.0)   # connect, read: a node's own list is read from memory and its store


def carried(service) -> bool:
    """Did another node of the cluster ask for this list (so: answer with this node's own)?"""
    return getattr(service, "cluster", None) is not None and bool(request.headers.get(HOP_HEADER))


def gather(cluster_node, client, owned: dict, what: str) -> dict:
    """Ask each node of `owned` (node id -> the registry's entries of its calls or rooms) for this
    request's path, with its query and credentials. -> node id -> the node's JSON answer, or None
    when it gave none (logged). Raises RegistryUnavailable (from the node list) when Redis is away."""
    if not owned:
        return {}
    nodes = {node.id: node for node in cluster_node.registry.nodes()}
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
