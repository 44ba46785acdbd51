"""The HTTP API (Flask, served by gevent pywsgi): Vobiz-style REST, recordings, ops JSON, health, metrics.

Routes (the Vobiz-style REST API of the README), all under `/api/v1/Account/<auth_id>/` and authenticated with
`X-Auth-ID`/`X-Auth-Token` or HTTP Basic (constant-time compare; 401 otherwise):
  Call/                          POST originate (`api`: "vobiz", or "twilio" for a Twilio app), GET list
                                 (live calls; `?status=all` adds ended ones)
  Call/<uuid>/                   GET, POST transfer (aleg_url), DELETE hangup
  Call/<uuid>/Stream/            POST start, GET list, DELETE all
  Call/<uuid>/Stream/<id>/       GET, DELETE
  Call/<uuid>/Timeline/          GET the call's timeline and webhook deliveries (callfork extension)
  Call/<uuid>/Play|Speak|DTMF|Record/   live-call controls (callfork/live_call_api.py, `service.live`)
  Events/                        GET a Server-Sent-Events feed of timeline events (`callfork tail`);
                                 `?call_uuid=` follows one call
  Webhooks/                      GET the webhooks not delivered yet (`callfork webhooks`): `?status=`
                                 pending,in_flight,held,failed,unsaved,delivered (comma-separated),
                                 `?call_uuid=`, `?limit=` (default 100, at most 1000), and a summary
  Webhooks/Retry/                POST: queue failed webhooks again, and those held behind them
                                 (`callfork retry-webhooks`); `call_uuid` for one call; `skip_failed`:
                                 send the held ones only, the failed ones stay failed
`/api/v1/ops/drain`              POST (authenticated): the node drains (callfork/drain.py; `callfork drain`)
`/recordings/<id>[.wav|.mp3]` (authenticated, unless `[server] recordings_public`; no extension: the file as written; the other
format: converted, callfork/recording_files.py), `/healthz` (200 ok; 503 degraded, or draining
with the drain's state), `/metrics` (Prometheus text).

Handlers never run call logic inline: they ask the service (`service.*` methods below), which
hands the work to the call's own greenlet or spawns one. The service object provides:
  config, store (call records), outbox (webhook deliveries), recordings_dir, calls (uuid -> live
  CallContext), auth_token, version, control (.connected, .reconnects),
  originate(**kw) -> request_uuid (ValueError: bad input, nothing dialled),
  hangup_call(uuid) -> bool, transfer_call(uuid, url, method) -> bool,
  start_stream(uuid, body) -> stream_id (ValueError: bad options), stop_stream(uuid, stream_id) -> bool,
  stop_all_streams(uuid) -> int, metrics() -> {name: (type, help, value or {label text: value})},
  storage_health() -> (figures, problems) (the database and the webhook queue: /healthz),
  resource_health() -> (figures, problems) (HTTP connections, file descriptors: /healthz),
  subscribe_events() -> queue / unsubscribe_events(queue) (for /Events/),
  drain (callfork/drain.py: .start() -> state, .state(), .active).
Errors are JSON `{"api_id", "error"}` with the HTTP status (400, 401, 404, 405, 408, 413, 500). The
server under the app (callfork/http_server.py) caps connections, request-head time and body size.
"""
from __future__ import annotations

import base64
import hmac
import json

from gevent.queue import Empty
from flask import Flask, Response, jsonify, request, send_file

from webhooks import UrlError, clean_url

from .api_objects import (MAX_OFFSET, ApiError, api_id, call_object, error_response,
                          read_body, stream_object, truthy)
from .live_call_api import register as register_live_call_routes
from .recording_files import NoRecording, recording_file, recording_id
from .conference_api import register as register_conference_routes
from .drain import NodeDraining
from .forwarding import install as install_forwarding
from .twilio_api import register as register_twilio_routes


WEBHOOK_STATUSES = ("pending", "in_flight", "held", "failed", "unsaved", "delivered")


def create_app(service) -> Flask:
    app = Flask("callfork")
    # a chunked body is cut here; a declared one before the app runs (callfork/http_server.py)
    app.config["MAX_CONTENT_LENGTH"] = service.config.server.http_max_body_bytes
    auth_id = service.config.server.auth_id
    allow_private = service.config.server.allow_private_urls

    def check_auth() -> None:
        given_id = request.headers.get("X-Auth-ID")
        given_token = request.headers.get("X-Auth-Token")
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                given_id, _, given_token = base64.b64decode(header[6:]).decode().partition(":")
            except Exception:
                raise ApiError(401, "malformed Basic authorization header") from None
        if not given_id or given_token is None:
            raise ApiError(401, "authentication required: X-Auth-ID and X-Auth-Token headers, or HTTP Basic")
        ok_id = hmac.compare_digest(given_id.encode(), auth_id.encode())
        ok_token = hmac.compare_digest((given_token or "").encode(), service.auth_token.encode())
        if not (ok_id and ok_token):
            raise ApiError(401, "invalid credentials")

    def check_account(account: str) -> None:
        check_auth()
        if not hmac.compare_digest(account.encode(), auth_id.encode()):
            raise ApiError(404, f"account {account} not found")

    def authorized(account: str) -> bool:
        try:
            check_account(account)
        except ApiError:
            return False
        return True

    install_forwarding(app, service, authorized)   # a cluster: requests for other nodes' calls go to them

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        resp = error_response(exc.status, exc.message)
        if exc.status == 401:
            resp.headers["WWW-Authenticate"] = 'Basic realm="callfork"'
        return resp

    @app.errorhandler(NodeDraining)
    def _draining(exc: NodeDraining):   # a new call asked of a draining node (Vobiz and Twilio REST)
        return error_response(503, str(exc))

    @app.errorhandler(404)
    def _not_found(exc):
        return error_response(404, "not found")

    @app.errorhandler(405)
    def _not_allowed(exc):
        return error_response(405, f"method {request.method} not allowed here")

    @app.errorhandler(413)
    def _too_large(exc):
        return error_response(413, f"request body larger than {app.config['MAX_CONTENT_LENGTH']} bytes "
                           "([server] http_max_body_bytes)")

    @app.errorhandler(400)
    def _bad_request(exc):   # werkzeug's (a body cut short, a malformed form), not an ApiError
        return error_response(400, f"bad request: {exc.description}")

    @app.errorhandler(500)
    def _internal(exc):
        return error_response(500, "internal error (see the service log)")

    # -- health and metrics ----------------------------------------------------------------------
    @app.get("/healthz")
    def healthz():
        fs = bool(service.control and service.control.connected)
        figures, problems = service.resource_health()   # HTTP connections, file descriptors
        storage, storage_problems = service.storage_health()   # the database, the webhook queue
        problems = problems + storage_problems
        figures = {**figures, **storage}
        if service.cluster is not None:   # node id, the nodes it sees, Redis's state
            cluster, cluster_problems = service.cluster.health()
            problems, figures = problems + cluster_problems, {**figures, **cluster}
        ok = fs and not problems
        body = {"status": "ok" if ok else "degraded", "freeswitch_connected": fs,
                "live_calls": len(service.calls), "version": service.version, "problems": problems, **figures}
        if service.drain.active:   # 503: a load balancer's check takes the node out (docs/cluster.md)
            body["status"], body["drain"], ok = "draining", service.drain.state(), False
        return jsonify(body), (200 if ok else 503)

    @app.post("/api/v1/ops/drain")
    def drain():
        """Stop taking new calls, let the live ones finish, then exit (callfork/drain.py); again: the same."""
        check_auth()
        state = service.drain.start()
        message = ("already draining" if state["already_draining"] else "draining") + (
            f": {state['live_calls']} live call(s) will finish, then callfork exits")
        return jsonify({"api_id": api_id(), "message": message, **state}), 202

    @app.get("/metrics")
    def metrics():
        lines = []
        for name, (kind, help_text, value) in service.metrics().items():
            lines.append(f"# HELP callfork_{name} {help_text}")
            lines.append(f"# TYPE callfork_{name} {kind}")
            if isinstance(value, dict):   # {label text: value}, e.g. one line per receiver host
                lines.extend(f"callfork_{name}{{{labels}}} {v}" for labels, v in value.items())
            else:
                lines.append(f"callfork_{name} {value}")
        return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")

    # -- recordings ------------------------------------------------------------------------------
    @app.get("/recordings/<name>")
    def recording(name: str):
        if not service.config.server.recordings_public:
            check_auth()
        try:
            if service.store.get_recording(recording_id(name)) is None:
                raise NoRecording(name)
            path, media_type = recording_file(service.recordings_dir, name)
        except NoRecording:
            raise ApiError(404, "recording not found") from None
        return send_file(path, mimetype=media_type)

    # -- calls -----------------------------------------------------------------------------------
    base = "/api/v1/Account/<account>/Call"

    @app.post(base + "/")
    def make_call(account: str):
        check_account(account)
        body = read_body()
        for field in ("from", "to", "answer_url"):
            if not body.get(field):
                raise ApiError(400, f"{field} is required")
        try:
            answer_url = clean_url(str(body["answer_url"]), allow_private=allow_private)
            hangup_url = clean_url(str(body["hangup_url"]), allow_private=allow_private) if body.get("hangup_url") else ""
            fallback_url = (clean_url(str(body["fallback_url"]), allow_private=allow_private)
                            if body.get("fallback_url") else "")
        except UrlError as exc:
            raise ApiError(400, str(exc)) from None
        method = str(body.get("answer_method", "POST")).upper()
        hangup_method = str(body.get("hangup_method", "POST")).upper()
        fallback_method = str(body.get("fallback_method", "POST")).upper()
        if not {method, hangup_method, fallback_method} <= {"GET", "POST"}:
            raise ApiError(400, "answer_method, hangup_method and fallback_method must be GET or POST")
        try:
            time_limit = int(body.get("time_limit") or 14400)
            ring_timeout = int(body.get("ring_timeout") or 60)
        except (TypeError, ValueError, OverflowError):   # (a JSON 1e999 is inf)
            raise ApiError(400, "time_limit and ring_timeout must be integers") from None
        if time_limit <= 0 or ring_timeout <= 0:
            raise ApiError(400, "time_limit and ring_timeout must be positive")
        # the app's API, as a number's `api`: "twilio" makes its documents TwiML, its webhooks Twilio's
        # (hangup_url is its StatusCallback, which gets `completed`)
        app_api = str(body.get("api") or "vobiz").lower()
        if app_api not in ("vobiz", "twilio"):
            raise ApiError(400, 'api must be "vobiz" or "twilio"')
        try:
            request_uuid = service.originate(
                from_number=str(body["from"]), to=str(body["to"]), answer_url=answer_url, answer_method=method,
                hangup_url=hangup_url, hangup_method=hangup_method,
                caller_name=str(body.get("caller_name", "")), time_limit=time_limit, ring_timeout=ring_timeout,
                fallback_url=fallback_url, fallback_method=fallback_method, api=app_api)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return jsonify({"api_id": api_id(), "message": "call fired", "request_uuid": request_uuid}), 201

    @app.get(base + "/")
    def list_calls(account: str):
        check_account(account)
        live_only = request.args.get("status", "live") != "all"
        try:
            limit = min(int(request.args.get("limit", 20)), 100)
            offset = int(request.args.get("offset", 0))
        except ValueError:
            raise ApiError(400, "limit and offset must be integers") from None
        if limit < 0 or offset < 0:
            raise ApiError(400, "limit and offset must not be negative")
        if offset > MAX_OFFSET:
            raise ApiError(400, f"offset must be at most {MAX_OFFSET}")
        if live_only and service.cluster is not None:   # every node's, each with its `node`
            calls = service.cluster.live_calls()
            calls.sort(key=lambda c: c.get("start_time") or 0, reverse=True)
            calls = calls[offset:offset + limit]
        elif live_only:  # what this process is running now (the store may hold calls a crash left behind)
            calls = [c for c in (service.store.get_call(u) for u in list(service.calls)) if c is not None]
            calls.sort(key=lambda c: c.get("start_time") or 0, reverse=True)
            calls = calls[offset:offset + limit]
        else:
            calls = service.store.list_calls(live_only=False, limit=limit, offset=offset)
        return jsonify({"api_id": api_id(), "meta": {"limit": limit, "offset": offset, "count": len(calls)},
                        "objects": [call_object(c, account, c["uuid"] in service.calls or "node" in c)
                                    for c in calls]})

    def stored_call(account: str, uuid: str) -> dict:
        check_account(account)
        call = service.store.get_call(uuid)
        if call is None:
            raise ApiError(404, "call not found")
        return call

    @app.get(base + "/<uuid>/")
    def get_call(account: str, uuid: str):
        call = stored_call(account, uuid)
        return jsonify(dict(call_object(call, account, uuid in service.calls), api_id=api_id()))

    @app.post(base + "/<uuid>/")
    def transfer_call(account: str, uuid: str):
        check_account(account)
        body = read_body()
        legs = body.get("legs", "aleg")
        if legs != "aleg":
            raise ApiError(400, "only legs=aleg is supported (callfork does not bridge calls yet)")
        if not body.get("aleg_url"):
            raise ApiError(400, "aleg_url is required")
        try:
            url = clean_url(str(body["aleg_url"]), allow_private=allow_private)
        except UrlError as exc:
            raise ApiError(400, str(exc)) from None
        method = str(body.get("aleg_method", "POST")).upper()
        if method not in ("GET", "POST"):
            raise ApiError(400, "aleg_method must be GET or POST")
        if not service.transfer_call(uuid, url, method):
            raise ApiError(404, "call not found or already ended")
        return jsonify({"api_id": api_id(), "message": "call transferred", "call_uuid": uuid}), 202

    @app.delete(base + "/<uuid>/")
    def hangup_call(account: str, uuid: str):
        check_account(account)
        # a REST call still ringing is cancelled (callfork/originate.py)
        if not service.hangup_call(uuid) and not service.originations.cancel(uuid):
            raise ApiError(404, "call not found or already ended")
        return "", 204

    @app.delete("/api/v1/Account/<account>/Request/<request_uuid>/")
    def hangup_request(account: str, request_uuid: str):
        """Plivo's "hang up a call request": the call a `POST Call/` placed, by its request_uuid,
        cancelled while it is queued or ringing, hung up once it runs."""
        check_account(account)
        uuid = service.originations.call_of_request(request_uuid)
        if uuid is None or not (service.originations.cancel(uuid) or service.hangup_call(uuid)):
            raise ApiError(404, "call request not found or already ended")
        return "", 204

    @app.get(base + "/<uuid>/Timeline/")
    def timeline(account: str, uuid: str):
        call = stored_call(account, uuid)
        return jsonify({"api_id": api_id(), "call": call, "timeline": service.store.timeline(uuid),
                        "streams": service.store.list_streams(uuid),
                        "recordings": service.store.list_recordings(uuid),
                        "webhooks": service.outbox.deliveries(uuid)})

    # -- streams ---------------------------------------------------------------------------------
    @app.post(base + "/<uuid>/Stream/")
    def start_stream(account: str, uuid: str):
        check_account(account)
        body = read_body()
        if not body.get("service_url"):
            raise ApiError(400, "service_url is required")
        try:   # refused now, as originate does, not after a 202 when the stream would connect
            clean_url(str(body["service_url"]), allow_private=allow_private, schemes=("ws", "wss"))
            if body.get("status_callback_url"):
                clean_url(str(body["status_callback_url"]), allow_private=allow_private)
        except UrlError as exc:
            raise ApiError(400, str(exc)) from None
        if uuid not in service.calls:
            raise ApiError(404, "call not found or already ended")
        try:
            stream_id = service.start_stream(uuid, body)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return jsonify({"api_id": api_id(), "message": "audio streaming started", "stream_id": stream_id}), 202

    @app.get(base + "/<uuid>/Stream/")
    def list_streams(account: str, uuid: str):
        stored_call(account, uuid)
        streams = [stream_object(st, account) for st in service.store.list_streams(uuid)]
        return jsonify({"api_id": api_id(), "meta": {"count": len(streams)}, "objects": streams})

    @app.delete(base + "/<uuid>/Stream/")
    def stop_all_streams(account: str, uuid: str):
        check_account(account)
        if uuid not in service.calls and service.store.get_call(uuid) is None:
            raise ApiError(404, "call not found")
        service.stop_all_streams(uuid)
        return "", 204

    @app.get(base + "/<uuid>/Stream/<stream_id>/")
    def get_stream(account: str, uuid: str, stream_id: str):
        check_account(account)
        stream = service.store.get_stream(stream_id)
        if stream is None or stream.get("call_uuid") != uuid:
            raise ApiError(404, "Stream not found")
        return jsonify(dict(stream_object(stream, account), api_id=api_id()))

    @app.delete(base + "/<uuid>/Stream/<stream_id>/")
    def stop_stream(account: str, uuid: str, stream_id: str):
        check_account(account)
        if not service.stop_stream(uuid, stream_id):
            raise ApiError(404, "Stream not found")
        return "", 204

    register_live_call_routes(app, service, check_account)   # Play, Speak, DTMF, Record on a live call
    register_conference_routes(app, service, check_account)  # Conference/ (callfork/conference_api.py)
    register_twilio_routes(app, service)   # Twilio's /2010-04-01/Accounts/<AccountSid>/Calls (callfork/twilio_api.py)

    # -- webhooks --------------------------------------------------------------------------------
    @app.get("/api/v1/Account/<account>/Webhooks/")
    def list_webhooks(account: str):
        """Webhooks oldest first (default: every one not delivered yet) and a summary of the queue."""
        check_account(account)
        statuses = tuple(s for s in request.args.get("status", "").split(",") if s) or None
        if statuses and not set(statuses) <= set(WEBHOOK_STATUSES):
            raise ApiError(400, f"status must be among {', '.join(WEBHOOK_STATUSES)}")
        try:
            limit = int(request.args.get("limit", 100))
        except ValueError:
            raise ApiError(400, "limit must be an integer") from None
        if not 1 <= limit <= 1000:
            raise ApiError(400, "limit must be between 1 and 1000")
        objects = service.outbox.webhooks(statuses, request.args.get("call_uuid") or None, limit)
        stats = service.outbox.stats()
        summary = {key: stats[key] for key in ("depth", "held", "failed", "unsaved", "lost", "failed_by_host")}
        summary["oldest_pending_age_s"] = round(stats["oldest_pending_age_s"], 3)
        summary["hosts_down"] = {host: {"failed_rounds": rounds, "next_try_in_s": round(wait, 3)}
                                 for host, (rounds, wait) in stats["hosts_down"].items()}
        return jsonify({"api_id": api_id(), "meta": {"limit": limit, "count": len(objects)},
                        "summary": summary, "objects": objects})

    @app.post("/api/v1/Account/<account>/Webhooks/Retry/")
    def retry_webhooks(account: str):
        """Queue failed webhooks again with those held behind them (all, or one call's with
        `call_uuid`), keys and order kept; `skip_failed`: only release the held ones."""
        check_account(account)
        body = read_body()
        call_uuid = body.get("call_uuid") or None
        if truthy(body.get("skip_failed", False)):
            count = service.outbox.release_held(call_uuid)
            message = f"{count} held webhooks released (the failed ones stay failed)"
        else:
            count = service.outbox.retry_failed(call_uuid)
            message = f"{count} failed webhooks queued again (with the webhooks held behind them)"
        return jsonify({"api_id": api_id(), "message": message, "count": count})

    # -- the live event feed ---------------------------------------------------------------------
    @app.get("/api/v1/Account/<account>/Events/")
    def events(account: str):
        check_account(account)
        only = request.args.get("call_uuid") or None
        feed = service.subscribe_events()

        def generate():
            try:
                yield ": callfork event feed\n\n"
                while True:
                    try:
                        item = feed.get(timeout=15)
                    except Empty:
                        yield ": keepalive\n\n"
                        continue
                    if only is not None and item.get("call_uuid") != only:
                        continue
                    yield f"data: {json.dumps(item, default=str)}\n\n"
            finally:
                service.unsubscribe_events(feed)

        return Response(generate(), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app
