"""What the HTTP API reads and answers, apart from its routes (http_api.py): the typed error a
handler raises (`ApiError`, answered as JSON `{"api_id", "error"}`), the request body as a flat dict
(JSON at most MAX_JSON_DEPTH deep, or a form), and the Vobiz/Plivo call and stream objects made from
the stored records."""
from __future__ import annotations

import uuid as uuidlib
from datetime import datetime, timezone

from flask import jsonify, request

from webhooks import UrlError, clean_url

__all__ = ["ApiError", "api_id", "error_response", "read_body", "truthy", "call_object", "stream_object",
           "MAX_OFFSET", "MAX_JSON_DEPTH"]


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def api_id() -> str:
    return str(uuidlib.uuid4())


def error_response(status: int, message: str):
    resp = jsonify({"api_id": api_id(), "error": message})
    resp.status_code = status
    return resp


MAX_OFFSET = 2 ** 63 - 1   # SQLite's integers are 64-bit
MAX_JSON_DEPTH = 32   # arrays and objects inside each other; the API's bodies are flat


def depth_ok(value, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if `value` nests arrays/objects at most `limit` deep (walked without recursion)."""
    todo = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return False
            todo.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return True


def read_body() -> dict:
    """JSON or form body as a flat dict of strings/values."""
    if request.is_json:
        try:
            data = request.get_json(silent=True)
            too_deep = not depth_ok(data)
        except RecursionError:   # the parser's (not a ValueError: silent=True lets it through)
            too_deep = True
        if too_deep:
            raise ApiError(400, f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep")
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        return data
    return request.form.to_dict()


def truthy(value) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes")


def call_object(call: dict, account: str, live: bool) -> dict:
    """A call record with the Plivo/Vobiz call-object names added (call_uuid, call_direction,
    call_status, call_duration, resource_uri) next to callfork's own."""
    out = dict(call)
    start, end = call.get("answer_time") or call.get("start_time"), call.get("end_time")
    out.update(call_uuid=call["uuid"], call_direction=call.get("direction"), call_status=call.get("status"),
               call_duration=int(round(end - start)) if start and end else None, live=live,
               resource_uri=f"/api/v1/Account/{account}/Call/{call['uuid']}/")
    return out


def iso_time(epoch):
    if not isinstance(epoch, (int, float)):
        return epoch
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def stream_object(stream: dict, account: str) -> dict:
    """A stream record in the Vobiz stream-object shape
    (https://docs.vobiz.ai/audio-streams/stream-object): ISO UTC times,
    end_time null while live, resource_uri."""
    out = dict(stream)
    out.update(start_time=iso_time(stream.get("start_time")), end_time=iso_time(stream.get("end_time")),
               resource_uri=f"/api/v1/Account/{account}/Call/{stream['call_uuid']}/Stream/{stream['stream_id']}/")
    return out


def callback_target(body: dict, allow_private: bool) -> tuple[str, str]:
    """A request's `callback_url` (checked, "" when absent) and `callback_method` (GET|POST, default
    POST); ApiError 400 naming the bad one."""
    url = ""
    if body.get("callback_url"):
        try:
            url = clean_url(str(body["callback_url"]), allow_private=allow_private)
        except UrlError as exc:
            raise ApiError(400, f"bad callback_url: {exc}") from None
    method = str(body.get("callback_method") or "POST").strip().upper()
    if method not in ("GET", "POST"):
        raise ApiError(400, f"callback_method must be GET or POST; got {method!r}")
    return url, method
