"""Twilio's REST API for calls (issue 14, item 3), under `/2010-04-01/Accounts/<AccountSid>/`, so that an
app written against Twilio (the `twilio` package's `Client`, pipecat's TwilioFrameSerializer auto
hang-up) drives callfork unchanged:

  Calls.json                      POST create (To, From, Url or Twiml, Method, FallbackUrl/Method,
                                  StatusCallback, StatusCallbackMethod, StatusCallbackEvent, Timeout,
                                  TimeLimit) → 201 the Call resource (status queued);
                                  GET list (To, From, Status filters; Page, PageSize),
                                  newest first; in a cluster whose nodes keep their own records
                                  (no [store] postgres_dsn) every live node's calls too, live and
                                  ended, asked of them (callfork/cluster_lists.py); asked by another
                                  node (X-Callfork-Forwarded-By), this node's own calls that pass
                                  the filters, up to the end of the page asked for (plus one)
  Calls/<CallSid>.json            GET fetch; POST update: Status=completed|canceled hangs up (an
                                  answered call) or cancels (a queued or ringing one); Url (+ Method)
                                  or Twiml continues the live call with that document
  Calls/<CallSid>/Streams.json    POST start a one-way stream on the live call, as <Start><Stream>
                                  (Url, Name, Track, StatusCallback, StatusCallbackMethod,
                                  ParameterN.Name / ParameterN.Value)
  Calls/<CallSid>/Streams/<StreamSid or Name>.json   POST Status=stopped stops it

https://www.twilio.com/docs/voice/api/call-resource and .../api/stream-resource. Requests are form
encoded, as Twilio's; answers are JSON in Twilio's shapes, errors `{"code", "message", "more_info",
"status"}` with Twilio's codes (https://www.twilio.com/docs/api/errors): 20003 (401, bad or missing
HTTP Basic credentials: the configured auth_id as the AccountSid and the auth token), 20404 (404:
another AccountSid in the path, an unknown call, a call that has ended, an unknown stream), 21201 /
21213 (no To / From), 21205 (no Url nor Twiml, or a bad URL), 21211 / 21212 (a To / From that cannot
be dialled), 21220 (a call that is not in progress cannot be redirected or streamed), 20422 ("Invalid
Parameter", answered with HTTP 400) for other bad values; any other path under /2010-04-01 is 20404. A call placed here runs with api "twilio" (TwiML, Twilio's webhooks and
signature); it is placed by callfork/originate.py, which posts its `initiated` and `ringing`.
A Call SID is "CA" + the call UUID's hex (verbs/twiml/sids.py), a Stream SID "MZ" + the stream id's.
Handlers only validate and ask the service; they never touch the call themselves.
"""
from __future__ import annotations

import base64
import heapq
import hmac
import time
import uuid as uuidlib
from email.utils import parsedate_to_datetime
from itertools import islice
from urllib.parse import urlencode

import gevent
import requests
from flask import jsonify, request

from verbs import LiveStream
from verbs.streaming import StreamOptions
from verbs.swml.stream import TRACKS
from verbs.twiml import API_VERSION, call_sid, call_uuid, e164, stream_sid
from verbs.twiml.status_callback import parse_events, rfc2822
from verbs.twiml.stream import stream_status
from webhooks import UrlError, clean_url

from . import cluster_lists

ERRORS_URL = "https://www.twilio.com/docs/errors/"
MAX_TWIML = 4000                 # Twilio: "Twiml ... max 4000 characters"
MAX_PAGE_SIZE = 1000
HANDOVER_S = 1.0                 # how long an update waits for a call that is neither pending nor live yet
# the store's status words -> Twilio's
STATUS = {"ringing": "ringing", "in-progress": "in-progress", "completed": "completed", "busy": "busy",
          "no-answer": "no-answer", "cancel": "canceled", "timeout": "no-answer", "failed": "failed"}


class TwilioError(Exception):
    """An answer in Twilio's error shape: HTTP `status`, Twilio error `code`, `message`."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def register(app, service) -> None:
    """Add the routes to `app` (callfork/http_api.py)."""
    auth_id = service.config.server.auth_id
    allow_private = service.config.server.allow_private_urls
    base = "/2010-04-01/Accounts/<account>"
    peers = requests.Session()   # asks the other nodes of a cluster for their calls

    @app.errorhandler(TwilioError)
    def _twilio_error(exc: TwilioError):
        resp = jsonify({"code": exc.code, "message": exc.message, "more_info": f"{ERRORS_URL}{exc.code}",
                        "status": exc.status})
        resp.status_code = exc.status
        if exc.status == 401:
            resp.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
        return resp

    def check(account: str) -> None:
        """HTTP Basic as the configured AccountSid and auth token (constant-time compare)."""
        header = request.headers.get("Authorization", "")
        given_id = given_token = ""
        if header.lower().startswith("basic "):
            try:
                given_id, _, given_token = base64.b64decode(header[6:]).decode().partition(":")
            except Exception:
                given_id = given_token = ""
        ok_id = hmac.compare_digest(given_id.encode(), auth_id.encode())
        ok_token = hmac.compare_digest(given_token.encode(), service.auth_token.encode())
        if not (ok_id and ok_token):
            raise TwilioError(401, 20003, "Authenticate")
        if not hmac.compare_digest(account.encode(), auth_id.encode()):
            not_found()

    def not_found():
        raise TwilioError(404, 20404, f"The requested resource {request.path} was not found")

    def form() -> dict:
        return request.form

    def url_field(body, name: str) -> str:
        value = str(body.get(name) or "").strip()
        if not value:
            return ""
        try:
            return clean_url(value, allow_private=allow_private)
        except UrlError as exc:
            raise TwilioError(400, 21205, f"{name} is not a valid URL: {exc}") from None

    def method_field(body, name: str) -> str:
        value = str(body.get(name) or "POST").strip().upper()
        if value not in ("GET", "POST"):
            raise TwilioError(400, 20422, f"{name} must be GET or POST")
        return value

    def int_field(body, name: str, default: int, low: int, high: int) -> int:
        value = str(body.get(name) or "").strip()
        if not value:
            return default
        try:
            number = int(value)
        except ValueError:
            raise TwilioError(400, 20422, f"{name} must be an integer") from None
        return min(max(number, low), high)   # Twilio clamps Timeout and TimeLimit into range

    def twiml_field(body) -> str:
        twiml = str(body.get("Twiml") or "")
        if len(twiml) > MAX_TWIML:
            raise TwilioError(400, 21205, f"Twiml is longer than {MAX_TWIML} characters")
        return twiml

    def resource(call: dict, account: str) -> dict:
        """A call record as Twilio's Call resource."""
        uuid = call["uuid"]
        sid = call_sid(uuid)
        uri = f"/2010-04-01/Accounts/{account}/Calls/{sid}"
        status = service.originations.status_of(uuid) or STATUS.get(call.get("status"), call.get("status"))
        answered, ended = call.get("answer_time"), call.get("end_time")
        created = call.get("created_at") or call.get("start_time")
        duration = str(int(round(ended - answered))) if answered and ended else None
        live = service.calls.get(uuid)
        to, caller = e164(call.get("to_number") or ""), e164(call.get("from_number") or "")
        return {
            "sid": sid, "account_sid": account, "parent_call_sid": None,
            "date_created": rfc2822(created) if created else None,
            "date_updated": rfc2822(call.get("updated_at") or created) if created else None,
            "to": to, "to_formatted": to, "from": caller, "from_formatted": caller,
            "phone_number_sid": None, "status": status,
            "start_time": rfc2822(call["start_time"]) if status not in ("queued",) and call.get("start_time") else None,
            "end_time": rfc2822(ended) if ended else None,
            "duration": duration, "price": None, "price_unit": "USD",
            "direction": "outbound-api" if call.get("direction") == "outbound" else "inbound",
            "answered_by": None, "annotation": None, "api_version": API_VERSION, "forwarded_from": None,
            "group_sid": None, "caller_name": (live.caller_name if live is not None else None) or None,
            "queue_time": "0", "trunk_sid": None, "uri": uri + ".json",
            "subresource_uris": {name: f"{uri}/{name.title().replace('_', '')}.json" for name in
                                 ("notifications", "recordings", "streams", "events", "payments",
                                  "siprec", "transcriptions", "user_defined_messages",
                                  "user_defined_message_subscriptions")},
        }

    def stored(account: str, sid: str) -> dict:
        uuid = call_uuid(sid)
        call = service.store.get_call(uuid) if uuid else None
        if call is None:
            not_found()
        return call

    # -- Calls.json --------------------------------------------------------------------------------
    @app.post(base + "/Calls.json")
    def twilio_create_call(account: str):
        check(account)
        body = form()
        to, from_number = str(body.get("To") or "").strip(), str(body.get("From") or "").strip()
        if not to:
            raise TwilioError(400, 21201, "No 'To' number is specified")
        if not from_number:
            raise TwilioError(400, 21213, "No 'From' number is specified")
        url, twiml = url_field(body, "Url"), twiml_field(body)
        if not url and not twiml.strip():
            raise TwilioError(400, 21205, "Url parameter is required (or Twiml)")
        try:
            events = parse_events(body.getlist("StatusCallbackEvent"))
        except ValueError as exc:
            raise TwilioError(400, 20422, str(exc)) from None
        uuid = str(uuidlib.uuid4())
        try:
            service.originate(
                from_number=from_number, to=to, answer_url=url, answer_method=method_field(body, "Method"),
                hangup_url=url_field(body, "StatusCallback"),
                hangup_method=method_field(body, "StatusCallbackMethod"),
                fallback_url=url_field(body, "FallbackUrl"), fallback_method=method_field(body, "FallbackMethod"),
                ring_timeout=int_field(body, "Timeout", 60, 5, 600),
                time_limit=int_field(body, "TimeLimit", 14400, 1, 86400),
                api="twilio", answer_document=twiml if not url else "",
                status_callback_events=events, call_uuid=uuid)
        except ValueError as exc:
            text = str(exc)
            if text.startswith("to:"):
                raise TwilioError(400, 21211, f"Invalid 'To' Phone Number: {to} ({text[3:].strip()})") from None
            if text.startswith("from:"):
                raise TwilioError(400, 21212, f"Invalid Caller ID: {from_number} ({text[5:].strip()})") from None
            raise TwilioError(400, 20422, text) from None
        return jsonify(resource(service.store.get_call(uuid), account)), 201

    def created(item: dict) -> float:
        try:
            return parsedate_to_datetime(item["date_created"]).timestamp()
        except (KeyError, TypeError, ValueError):
            return 0.0

    def own_calls(account: str):
        """(start time, Call resource) of this node's records, newest first, read in batches."""
        offset = 0
        while True:
            batch = service.store.list_calls(limit=500, offset=offset)
            offset += len(batch)
            for call in batch:
                yield call.get("start_time") or call.get("created_at") or 0.0, resource(call, account)
            if len(batch) < 500:
                return

    def other_nodes_calls(account: str) -> list[tuple[float, dict]]:
        """(start time, Call resource) of the other nodes' calls, when their records are not in this
        node's store: every live node's own list (the calls of this request's page and those before
        it, as it answers a carried request), or, from a node that gave none, the registry's entries
        of its live calls."""
        if service.cluster is None or service.config.store.postgres_dsn:
            return []   # (a shared store lists every node's calls already)

        def answered(answer, entries):
            starts = {call_sid(e["uuid"]): e.get("start_time") for e in entries}
            items, times = answer.get("calls"), answer.get("start_times")
            if not isinstance(items, list):
                return []
            if not isinstance(times, list) or len(times) != len(items):
                times = [None] * len(items)
            return [(at if isinstance(at, (int, float)) else starts.get(item.get("sid")) or created(item), item)
                    for item, at in zip(items, times) if isinstance(item, dict) and item.get("sid")]

        return cluster_lists.collect(
            service, peers, "live calls",
            lambda registry: ((e["node"], e) for e in registry.cluster_calls() if e["uuid"] not in service.calls),
            answered, stand_in=lambda entries: [(e.get("start_time") or 0.0, resource(e, account)) for e in entries],
            every_node=True)

    def matching(pairs, wanted: dict):
        """The (start time, Call resource) of `pairs` that pass the filters, each call once."""
        seen = set()
        for start, item in pairs:
            if item["sid"] in seen or any(value and item.get(key) != value for key, value in wanted.items()):
                continue
            seen.add(item["sid"])
            yield start, item

    @app.get(base + "/Calls.json")
    def twilio_list_calls(account: str):
        check(account)
        args = request.args
        try:
            page = max(0, int(args.get("Page") or 0))
            size = min(max(1, int(args.get("PageSize") or 50)), MAX_PAGE_SIZE)
        except ValueError:
            raise TwilioError(400, 20422, "Page and PageSize must be integers") from None
        wanted = {"to": e164(args.get("To", "")), "from": e164(args.get("From", "")),
                  "status": args.get("Status", "")}
        # this page, the ones before it and one more call, to know of a next page (filtered here:
        # the store filters on nothing but liveness)
        enough = (page + 1) * size + 1
        if cluster_lists.carried(service):   # another node gathers the cluster's list: this node's part
            mine = list(islice(matching(own_calls(account), wanted), enough))
            return jsonify({"calls": [item for _start, item in mine], "start_times": [start for start, _item in mine]})
        others = sorted(other_nodes_calls(account), key=lambda pair: pair[0], reverse=True)
        merged = heapq.merge(own_calls(account), others, key=lambda pair: -pair[0])
        rows = [item for _start, item in islice(matching(merged, wanted), page * size, enough)]
        more = len(rows) > size
        rows = rows[:size]
        query = {k: v for k, v in (("To", args.get("To")), ("From", args.get("From")),
                                   ("Status", args.get("Status"))) if v}

        def page_uri(number):
            return f"/2010-04-01/Accounts/{account}/Calls.json?" + urlencode({**query, "PageSize": size,
                                                                                "Page": number})
        return jsonify({"calls": rows, "page": page, "page_size": size, "start": page * size,
                        "end": page * size + max(len(rows) - 1, 0), "uri": page_uri(page),
                        "first_page_uri": page_uri(0), "next_page_uri": page_uri(page + 1) if more else None,
                        "previous_page_uri": page_uri(page - 1) if page else None})

    # -- Calls/<CallSid>.json --------------------------------------------------------------------
    @app.get(base + "/Calls/<sid>.json")
    def twilio_fetch_call(account: str, sid: str):
        check(account)
        return jsonify(resource(stored(account, sid), account))

    @app.post(base + "/Calls/<sid>.json")
    def twilio_update_call(account: str, sid: str):
        check(account)
        body = form()
        call = stored(account, sid)
        uuid = call["uuid"]
        status = str(body.get("Status") or "").strip().lower()
        url, twiml = url_field(body, "Url"), twiml_field(body)
        if status and status not in ("completed", "canceled"):
            raise TwilioError(400, 20422, "Status must be completed or canceled")
        if not (status or url or twiml.strip()):
            raise TwilioError(400, 21205, "one of Url, Twiml or Status is required")
        live, pending = service.calls.get(uuid), service.originations.status_of(uuid)
        if live is None and pending is None and not call.get("end_time"):
            # not ended: it is between its originate and its start in callfork (a moment)
            deadline = time.monotonic() + HANDOVER_S
            while live is None and pending is None and time.monotonic() < deadline:
                gevent.sleep(0.02)
                live, pending = service.calls.get(uuid), service.originations.status_of(uuid)
        if live is None and pending is None:
            # over (or never ours to run): pipecat's auto hang-up reads 404 20404 as "already ended"
            if status:
                not_found()
            raise TwilioError(400, 21220, "Call is not in-progress. Cannot redirect.")
        if status:
            if pending is not None:
                service.originations.cancel(uuid)
            elif status == "completed":   # canceled leaves an answered call alone, as on Twilio
                service.hangup_call(uuid)
                live.session.wait_gone(2.0)   # so the answer shows it ended (hangup is asynchronous)
            answer = resource(service.store.get_call(uuid), account)
            if live is not None and live.session.gone or pending is not None:
                answer["status"] = "completed" if live is not None else "canceled"
            return jsonify(answer)
        if live is None or not live.session.answered:
            raise TwilioError(400, 21220, "Call is not in-progress. Cannot redirect.")
        service.transfer_call(uuid, url, method_field(body, "Method"), document=None if url else twiml)
        return jsonify(resource(service.store.get_call(uuid), account))

    @app.route("/2010-04-01/<path:rest>", methods=["GET", "POST", "DELETE", "PUT", "PATCH"])
    def twilio_unknown(rest: str):
        """What this API does not have (Twilio's other resources, DELETE of a call record)."""
        parts = rest.split("/")
        check(parts[1] if len(parts) > 1 and parts[0] == "Accounts" else auth_id)
        not_found()

    # -- Streams ---------------------------------------------------------------------------------
    def live_call(account: str, sid: str):
        call = stored(account, sid)
        ctx = service.calls.get(call["uuid"])
        if ctx is None or ctx.session.gone:
            not_found()
        return ctx

    def stream_resource(stream, account: str, status: str) -> dict:
        sid = stream_sid(stream.stream_id)
        csid = call_sid(stream.call.uuid)
        return {"sid": sid, "account_sid": account, "call_sid": csid, "name": stream.options.name,
                "status": status, "date_updated": rfc2822(),
                "uri": f"/2010-04-01/Accounts/{account}/Calls/{csid}/Streams/{sid}.json"}

    @app.post(base + "/Calls/<sid>/Streams.json")
    def twilio_start_stream(account: str, sid: str):
        check(account)
        body = form()
        ctx = live_call(account, sid)
        if not ctx.session.answered:
            raise TwilioError(400, 21220, "Call is not in-progress. Cannot start a stream.")
        url = str(body.get("Url") or "").strip()
        try:
            url = clean_url(url, allow_private=allow_private, schemes=("ws", "wss"))
        except UrlError as exc:
            raise TwilioError(400, 21205, f"Url must be a ws:// or wss:// URL: {exc}") from None
        track = str(body.get("Track") or "inbound_track")
        if track not in TRACKS:
            raise TwilioError(400, 20422, f"Track must be one of {', '.join(TRACKS)}")
        name = str(body.get("Name") or "").strip() or None
        if name and any(s.options.name == name and not s.ended.is_set() for s in ctx.streams.values()):
            raise TwilioError(400, 20422, f"a stream named {name!r} is already running on this call")
        parameters, n = {}, 1
        while body.get(f"Parameter{n}.Name") is not None:
            parameters[str(body[f"Parameter{n}.Name"])] = str(body.get(f"Parameter{n}.Value") or "")
            n += 1
        status_url = url_field(body, "StatusCallback") or None
        options = StreamOptions(url=url, dialect="twilio", track=TRACKS[track], encoding="mulaw",
                                sample_rate=8000, content_type="audio/x-mulaw;rate=8000", name=name,
                                custom_parameters=parameters, status_url=status_url,
                                status_method=method_field(body, "StatusCallbackMethod"), twiml=True,
                                on_status=stream_status)   # Twilio's stream callbacks, as <Start><Stream>
        stream = LiveStream(ctx, options)
        try:
            service.start_stream(ctx.uuid, body, stream=stream)
        except ValueError:   # the call ended since live_call looked
            raise TwilioError(404, 20404, f"The requested resource {request.path} was not found") from None
        return jsonify(stream_resource(stream, account, "in-progress")), 201

    @app.post(base + "/Calls/<sid>/Streams/<stream>.json")
    def twilio_stop_stream(account: str, sid: str, stream: str):
        check(account)
        body = form()
        ctx = live_call(account, sid)
        if str(body.get("Status") or "").strip().lower() != "stopped":
            raise TwilioError(400, 20422, "Status must be stopped")
        found = next((s for s in ctx.streams.values()
                      if stream in (stream_sid(s.stream_id), s.stream_id, s.options.name)), None)
        if found is None or not service.stop_stream(ctx.uuid, found.stream_id):
            not_found()
        return jsonify(stream_resource(found, account, "stopped"))

