"""REST requests carried to the node that owns their call or room (issue 15), in one place: a Flask
`before_request` hook on every route under
  /api/v1/Account/<account>/Call/<uuid>/...        (get, transfer, hang up, Stream, Play, Speak,
                                                    DTMF, Record, Timeline)
  /2010-04-01/Accounts/<account>/Calls/<sid>...    (fetch, update, Streams)
  /api/v1/Account/<account>/Conference/<name>/...
  /api/v1/Account/<account>/Request/<request_uuid>/   (the call a REST originate placed, by the
                                                    request UUID its registry entry carries while
                                                    it is being placed)

A request whose call is not this node's (not live here, nor a REST originate pending here), or
whose room no call of this node is in, and which the registry gives to another live node, is sent
to that node's advertise_url: same method, path, query, body and headers (credentials included:
the owner checks them), plus `X-Callfork-Forwarded-By: <this node>`; the owner's status, body and
content type are the answer, with `X-Callfork-Served-By: <owner>`. Only a request that passes
this node's own credential check (`authorized(account)`) is carried: one that does not is answered
here (401), so an unauthenticated caller never reaches another node's listener nor learns which node
runs a call. A request that already carries
the hop header is never carried again (two nodes whose registry views disagree cannot bounce it).
The request is answered here, as any unknown or ended call is (404), when the registry has no
owner for it, Redis is away, the owner is dead (its registration expired) or does not answer; the
last two are logged with the call's UUID (or room).
"""
from __future__ import annotations

import logging
from urllib.parse import quote

import requests
from flask import Response, request

from cluster import RegistryUnavailable
from verbs.twiml import call_uuid

log = logging.getLogger("callfork.forwarding")

HOP_HEADER = "X-Callfork-Forwarded-By"
SERVED_BY = "X-Callfork-Served-By"
TIMEOUT_S = (2.0, 15.0)   # connect, read: the owner's handlers hand work to the call and answer at once
# request headers not carried: hop-by-hop ones, and those the HTTP client sets for the new request
DROPPED_REQUEST = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "te", "upgrade",
                   "proxy-authorization", "proxy-connection", "accept-encoding", HOP_HEADER.lower()}
KEPT_RESPONSE = ("Content-Type", "WWW-Authenticate", "Location", "Retry-After")
CALL_RULES = ("/api/v1/Account/<account>/Call/<uuid>", "/2010-04-01/Accounts/<account>/Calls/<sid>")
ROOM_RULE = "/api/v1/Account/<account>/Conference/<name>"
REQUEST_RULE = "/api/v1/Account/<account>/Request/<request_uuid>"


def install(app, service, authorized) -> None:
    """Carry `app`'s call and room requests to their owners (no-op outside a cluster);
    `authorized(account)`: the request's credentials are this node's, for that account."""
    node = getattr(service, "cluster", None)
    if node is None:
        return
    client = requests.Session()

    @app.before_request
    def _carry():
        rule = request.url_rule.rule if request.url_rule is not None else ""
        args = request.view_args or {}
        if request.headers.get(HOP_HEADER):
            return None
        if rule.startswith(CALL_RULES):
            uuid = args["uuid"] if "uuid" in args else call_uuid(args.get("sid", ""))
            if not uuid or uuid in service.calls or service.originations.pending(uuid):
                return None
            what, lookup = f"call {uuid}", node.registry.owner_of_call
            key = uuid
        elif rule.startswith(ROOM_RULE):
            key = args.get("name", "")
            if node.registry.owns_room(key):
                return None
            what, lookup = f"conference {key!r}", node.registry.owner_of_room
        elif rule.startswith(REQUEST_RULE):
            key = args.get("request_uuid", "")
            if service.originations.call_of_request(key) is not None:
                return None
            what, lookup = f"call request {key}", lambda k: _owner_of_request(node.registry, k)
        else:
            return None
        if not authorized(args.get("account", "")):
            return None   # answered here: the route's own check refuses it
        try:
            owner = lookup(key)
        except RegistryUnavailable:
            return None   # (the registry logged the outage once)
        if owner is None or owner[0] == node.node_id:
            return None
        owner_id, owner_node = owner
        if owner_node is None:
            log.warning("%s: its node %s is dead (no heartbeat): %s %s answered here", what, owner_id,
                        request.method, request.path)
            return None
        return _forward(client, node.node_id, owner_node, what)


def _owner_of_request(registry, request_uuid: str):
    """(node id, Node | None) of the node placing the call of `request_uuid`, or None."""
    for entry in registry.cluster_calls():
        if entry.get("request_uuid") == request_uuid:
            return registry.owner_of_call(entry["uuid"])
    return None


def _forward(client, self_id: str, owner, what: str):
    path = quote(request.path, safe="/:@!$&'()*+,;=-._~")
    query = request.query_string.decode("latin-1")
    url = owner.advertise_url + path + (f"?{query}" if query else "")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in DROPPED_REQUEST}
    headers[HOP_HEADER] = self_id
    try:
        resp = client.request(request.method, url, headers=headers, data=request.get_data(),
                              timeout=TIMEOUT_S, allow_redirects=False)
    except requests.RequestException as exc:
        log.error("%s: its node %s at %s did not answer the carried %s %s (%r): answered here", what,
                  owner.id, owner.advertise_url, request.method, request.path, exc)
        return None
    log.debug("%s: %s %s carried to node %s: %s", what, request.method, request.path, owner.id, resp.status_code)
    out = Response(resp.content, status=resp.status_code)
    del out.headers["Content-Type"]   # the owner's, if it gave one
    for name in KEPT_RESPONSE:
        if name in resp.headers:
            out.headers[name] = resp.headers[name]
    out.headers[SERVED_BY] = owner.id
    return out
