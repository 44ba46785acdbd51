"""The built-in sample application: what a user's web app would be, for `callfork demo` and for
`callfork serve` without a config file.

An HTTP app (Flask on gevent pywsgi) answers calls with a Vobiz XML document — Speak, a session
Record, a bidirectional Stream, Speak — and receives every webhook callfork posts (Hangup,
Record/RecordStop, stream status). A WebSocket echo bot (Vobiz stream dialect) sends the caller's
own audio back one second later with `playAudio`, marking each reply with a `checkpoint`.
It is a sample: it keeps what it receives in memory and prints it.
"""
from __future__ import annotations

import json
import logging
from collections import deque
import time

import gevent
import gevent.event
from flask import Flask, Response, request
from gevent.pywsgi import WSGIServer
from gevent.server import StreamServer

from audio_fork import ServerWebSocket, WebSocketClosed

log = logging.getLogger("callfork.demo_app")

DOCUMENT = """<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Speak>Welcome to the callfork demo. This call is recorded, and your voice goes to an echo bot.</Speak>
  <Record recordSession="true" redirect="false" playBeep="false" fileFormat="wav" maxLength="3600"
          action="{base}/record-action" callbackUrl="{base}/record-stop"/>
  <Stream bidirectional="true" keepCallAlive="true" streamTimeout="{stream_seconds}"
          contentType="audio/x-l16;rate=8000" statusCallbackUrl="{base}/stream-status">{ws}/echo</Stream>
  <Speak>The echo bot is done. Goodbye.</Speak>
</Response>
"""


class SampleApp:
    def __init__(self, host: str = "127.0.0.1", stream_seconds: int = 8, echo_delay_s: float = 1.0, quiet=False):
        self.host = host
        self.stream_seconds = stream_seconds
        self.echo_delay_s = echo_delay_s
        self.quiet = quiet
        # what it received, newest kept (`callfork serve` may run it for days)
        self.webhooks: deque = deque(maxlen=10000)   # every request received: {"path", "form", "time"}
        self.ws_events: deque = deque(maxlen=10000)  # what the echo bot saw: {"event", ...}
        self._changed = gevent.event.Event()
        self.http = WSGIServer((host, 0), self._flask(), log=None)
        self.ws = StreamServer((host, 0), self._ws_connection)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "SampleApp":
        self.http.start()
        self.ws.start()
        return self

    def stop(self) -> None:
        self.http.stop(timeout=1)
        self.ws.stop(timeout=1)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.http.server_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws.server_port}"

    @property
    def answer_url(self) -> str:
        return self.base_url + "/answer"

    @property
    def hangup_url(self) -> str:
        return self.base_url + "/hangup"

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            gevent.sleep(min(0.05, remaining))
        return True

    def events(self, name: str) -> list[dict]:
        return [w for w in self.webhooks if w["form"].get("Event") == name]

    # -- HTTP ------------------------------------------------------------------------------------
    def _flask(self) -> Flask:
        app = Flask("callfork-sample-app")

        @app.route("/answer", methods=["GET", "POST"])
        def answer():
            self._record("/answer")
            body = DOCUMENT.format(base=self.base_url, ws=self.ws_url, stream_seconds=self.stream_seconds)
            return Response(body, mimetype="application/xml")

        @app.route("/<path:hook>", methods=["GET", "POST"])
        def webhook(hook):
            self._record("/" + hook)
            return Response("<Response/>", mimetype="application/xml")

        return app

    def _record(self, path: str) -> None:
        form = request.values.to_dict()
        self.webhooks.append({"path": path, "form": form, "time": time.time()})
        if not self.quiet:
            event = form.get("Event", "")
            detail = {k: form[k] for k in ("CallUUID", "StreamID", "RecordingID", "Name", "HangupCauseName",
                                           "RecordingDurationMs", "Error") if form.get(k)}
            print(f"  sample app ← {path} {event} {json.dumps(detail)}", flush=True)

    # -- the echo bot ----------------------------------------------------------------------------
    def _ws_connection(self, sock, peer) -> None:
        ws = ServerWebSocket(sock, peer)
        try:
            req = ws.read_request(timeout=5)
            if req.path != "/echo":
                ws.reject(404)
                return
            ws.accept(None)
            self._echo(ws)
        except WebSocketClosed:
            pass
        finally:
            ws.abort()

    def _echo(self, ws) -> None:
        stream_id, pending, replies = None, [], 0
        started = time.monotonic()
        while True:
            msg = ws.receive(timeout=30)
            if msg is None:
                self.ws_events.append({"event": "closed", "code": ws.close_code})
                return
            if isinstance(msg, bytes):
                continue
            data = json.loads(msg)
            event = data.get("event")
            if event == "start":
                stream_id = data["start"]["streamId"]
                self.ws_events.append({"event": "start", "start": data["start"]})
            elif event == "media":
                pending.append(data["media"]["payload"])
                if time.monotonic() - started >= self.echo_delay_s * (replies + 1):
                    # echo the last second of the caller's audio back, then mark it
                    ws.send_text(json.dumps({"event": "playAudio", "streamId": stream_id, "media": {
                        "contentType": "audio/x-l16", "sampleRate": 8000,
                        "payload": _join_base64(pending)}}))
                    replies += 1
                    ws.send_text(json.dumps({"event": "checkpoint", "streamId": stream_id,
                                             "name": f"echo-{replies}"}))
                    pending = []
            else:
                self.ws_events.append(data)


def _join_base64(chunks: list[str]) -> str:
    import base64
    return base64.b64encode(b"".join(base64.b64decode(c) for c in chunks)).decode()
