"""Twilio's own Python package pointed at callfork, for the tests of callfork/twilio_api.py: `client(stack)`
is a `twilio.rest.Client` whose requests go to the stack's HTTP API instead of https://api.twilio.com
(a `TwilioHttpClient` that rewrites the base URL: the package's documented hook for custom HTTP
clients), `twilio_stack(...)` a Stack whose auth_id is a Twilio-style AccountSid, and
`status_callbacks(stack, path)` the StatusCallback requests the app received, each checked with the
package's RequestValidator."""
from __future__ import annotations

from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from harness import Stack

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "test-token"            # tests/harness.py sets it as the service's auth token
EVENTS = ["initiated", "ringing", "answered", "completed"]


class ToCallfork(TwilioHttpClient):
    """Sends what the package would send to api.twilio.com to callfork's HTTP API."""

    def __init__(self, base_url: str):
        super().__init__(pool_connections=False, timeout=15)
        self.base_url = base_url.rstrip("/")

    def request(self, method, url, *args, **kwargs):
        return super().request(method, url.replace("https://api.twilio.com", self.base_url), *args, **kwargs)


def twilio_stack(**kwargs) -> Stack:
    env = {"CALLFORK_SERVER_AUTH_ID": ACCOUNT, **kwargs.pop("env", {})}
    return Stack(env=env, **kwargs)


def client(stack, account: str = ACCOUNT, token: str = TOKEN) -> Client:
    return Client(account, token, http_client=ToCallfork(stack.http_url))


def signed(stack, req) -> dict:
    """The form of an app request, after checking its X-Twilio-Signature as a Twilio app would."""
    url = stack.app.url(req.path) + (f"?{req.query}" if req.query else "")
    params = req.form if req.method == "POST" else {}
    assert RequestValidator(TOKEN).validate(url, params, req.headers.get("x-twilio-signature", "")), req.path
    return req.form if req.method == "POST" else req.args


def status_callbacks(stack, path: str, call_sid: str | None = None) -> list:
    """The StatusCallback forms posted to `path` (for `call_sid`), signatures checked, in arrival order."""
    forms = [signed(stack, r) for r in list(stack.app.requests) if r.path == path]
    return [f for f in forms if call_sid is None or f.get("CallSid") == call_sid]


def wait_status(stack, path: str, call_sid: str, status: str, timeout: float = 20.0) -> list:
    """Wait until the call's `completed` (or the named CallbackSource event) reached `path`."""
    stack.app.wait_for(lambda: any(f.get("CallStatus") == status
                                   for f in status_callbacks(stack, path, call_sid)), timeout)
    return status_callbacks(stack, path, call_sid)
