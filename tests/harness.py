"""The whole product on real sockets, for scenario tests: a FreeSWITCH (the built-in simulator, or a
real one when CALLFORK_FS_ESL=host:port:password is set), the callfork service, and the user's web
app (a real HTTP receiver that serves documents and records every webhook).

    with Stack() as stack:
        stack.app.document("/answer", "<Response><Speak>hi</Speak></Response>")
        call = stack.call(to="1000", audio=wav, hangup_after=10)
        summary = call.wait(30)
        hangup = stack.app.wait_event("Hangup")

Everything binds free loopback ports; the data directory is a fresh temporary one.

`Stack(real=True)` uses the real FreeSWITCH named by CALLFORK_FS_ESL=host:port:password instead of
the simulator (its dialplan routes `^callfork` numbers to `socket 127.0.0.1:8084 async full`, see
freeswitch/); scenario tests parametrized with `switch_modes()` run on both.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid as uuidlib
from pathlib import Path

import pytest

from esl_app import load_config
from callfork.service import Service
from switch_sim import CallScript, Simulator

from free_ports import free_port  # noqa: F401  (the tests import it from here)
from http_receiver import HttpReceiver, Reply
from waiting import wait_until, wav_complete


def switch_modes():
    """Parametrize a scenario over the simulator and (marked `freeswitch`) a real FreeSWITCH."""
    return pytest.mark.parametrize("real_fs", [False, pytest.param(True, marks=pytest.mark.freeswitch)],
                                   ids=["simulator", "freeswitch"])




class AppServer(HttpReceiver):
    """The user's web app: documents by path (a string, or a function of the request), and a
    record of every webhook it received (Hangup, Record, stream status ...)."""

    def __init__(self):
        self.documents = {}
        super().__init__(responder=self._respond)

    def document(self, path: str, body, content_type: str = "application/xml", status: int = 200) -> str:
        """Serve `body` (str/bytes, or a function(request) -> str|Reply) at `path`; returns its URL."""
        self.documents[path] = (body, content_type, status)
        return self.url(path)

    def _respond(self, req):
        entry = self.documents.get(req.path)
        if entry is None:
            return Reply(200, b"<Response/>", "application/xml")
        body, content_type, status = entry
        if callable(body):
            body = body(req)
            if isinstance(body, Reply):
                return body
        if isinstance(body, str):
            body = body.encode()
        return Reply(status, body, content_type)

    def events(self, event: str | None = None, path: str | None = None) -> list:
        out = []
        for req in list(self.requests):
            form = req.form if req.method == "POST" else req.args
            if event is not None and form.get("Event") != event:
                continue
            if path is not None and req.path != path:
                continue
            out.append(req)
        return out

    def wait_event(self, event: str, timeout: float = 10.0, count: int = 1, path: str | None = None):
        """The first request carrying Event=`event` (waits until `count` of them arrived)."""
        self.wait_for(lambda: len(self.events(event, path)) >= count, timeout)
        return self.events(event, path)[0]

    def wait_path(self, path: str, timeout: float = 10.0, count: int = 1):
        self.wait_for(lambda: len([r for r in self.requests if r.path == path]) >= count, timeout)
        return [r for r in self.requests if r.path == path]


class RealCall:
    """A call on a real FreeSWITCH: a loopback call to `callfork<to>` whose B leg runs the dialplan
    and reaches callfork; the A leg is the caller. Its inline apps keep what it hears
    (`record_session` with RECORD_READ_ONLY: what the B leg writes), play `audio` (a path
    FreeSWITCH can read: the tests run on the FreeSWITCH host), then stay on the line (`park`):
    a phone that sends silence after its audio (`send_silence_when_idle`), or with `vad`, one that
    sends nothing (the far leg then reads CNG). Digits in `dtmf` go with `uuid_send_dtmf` at the
    given seconds; `hangup_after` seconds end the call from the caller's side. The summary comes
    from the Hangup webhook callfork posts (events: not observed here)."""

    def __init__(self, stack, to, audio=None, dtmf=(), hangup_after=None, vad=False, **ignored):
        self.stack = stack
        control = stack.service.control
        self.a_uuid = str(uuidlib.uuid4())
        self.heard_path = stack.data_dir / f"heard-{self.a_uuid}.wav"
        apps = ["set:RECORD_READ_ONLY=true", f"record_session:{self.heard_path}"]
        if not vad:
            apps.append("set:send_silence_when_idle=-1")
            if audio:
                apps.append(f"playback:{audio}")
        elif audio:
            apps += _vad_apps(audio, stack.data_dir / f"caller-{self.a_uuid}")
        apps.append("park")
        variables = f"origination_uuid={self.a_uuid},origination_caller_id_number=15551230001"
        reply = control.bgapi(f"originate {{{variables}}}loopback/callfork{to}/default '{','.join(apps)}' inline",
                              timeout=30)
        if not reply.startswith("+OK"):
            raise RuntimeError(f"originate failed: {reply.strip()}")
        self.uuid = None
        for digits, at in dtmf:
            control.api(f"sched_api +{max(1, round(at))} none uuid_send_dtmf {self.a_uuid} {digits}")
        if hangup_after:
            control.api(f"sched_hangup +{max(1, round(hangup_after))} {self.a_uuid} NORMAL_CLEARING")

    def wait(self, timeout: float = 30.0) -> dict:
        form = self.stack.app.wait_event("Hangup", timeout=timeout).form
        self.uuid = form.get("CallUUID")
        return {"uuid": self.uuid, "answered": bool(form.get("AnswerTime")),
                "hangup_cause": form.get("HangupCause"), "duration_s": float(form.get("Duration") or 0),
                "events": []}

    def heard(self, timeout: float = 15.0):
        """What the caller heard, once the call has ended (FreeSWITCH finishes the file then)."""
        import numpy as np
        import soundfile
        control = self.stack.service.control
        wait_until(lambda: control.api(f"uuid_exists {self.a_uuid}").strip() != "true", timeout)
        wait_until(lambda: wav_complete(self.heard_path), 5, "the caller's recording finished")
        data, _rate = soundfile.read(str(self.heard_path), dtype="int16", always_2d=True)
        return np.ascontiguousarray(data[:, 0])


def _vad_apps(audio: str, prefix) -> list:
    """A phone that sends no packet for a silent 20 ms frame (as the simulator's `vad` caller):
    its voiced stretches are played, its silent ones are `sleep`s (which write nothing without
    send_silence_when_idle), so the far leg reads CNG there."""
    import soundfile
    data, rate = soundfile.read(audio, dtype="int16", always_2d=True)
    if rate != 8000:
        raise ValueError("vad callers need 8 kHz audio")
    x = data[:, 0]
    n = len(x) // 160
    voiced = [bool(x[i * 160:(i + 1) * 160].any()) for i in range(n)]
    apps, start = [], 0
    while start < n:
        end = start
        while end < n and voiced[end] == voiced[start]:
            end += 1
        if voiced[start]:
            path = f"{prefix}-{start}.wav"
            soundfile.write(path, x[start * 160:end * 160], 8000, subtype="PCM_16")
            apps.append(f"playback:{path}")
        else:
            apps.append(f"sleep:{(end - start) * 20}")
        start = end
    return apps


class Stack:
    """Simulator (or real FreeSWITCH) + callfork service + the user's app, on free ports."""

    def __init__(self, *, flavor: str = "jambonz", config_text: str = "", env: dict | None = None,
                 answer_path: str = "/answer", hangup_path: str = "/hangup", fallback_path: str = "",
                 real: bool = False):
        self.app = AppServer()
        self.data_dir = Path(tempfile.mkdtemp(prefix="callfork-test-"))
        self.flavor = flavor
        self.real_fs = os.environ.get("CALLFORK_FS_ESL") if real else None
        if real and not self.real_fs:
            raise RuntimeError("Stack(real=True) needs CALLFORK_FS_ESL=host:port:password")
        self.config_text = config_text   # [[numbers]] before the catch-all; may be set until start()
        self._env = env or {}
        self.answer_path, self.hangup_path, self.fallback_path = answer_path, hangup_path, fallback_path
        self.sim = None
        self.service = None

    def start(self) -> "Stack":
        self.app.start()
        ports = {name: free_port() for name in ("esl", "outbound", "http", "relay")}
        if self.real_fs:
            host, port, password = self.real_fs.split(":", 2)
            # a real FreeSWITCH's dialplan sends ^callfork numbers to socket 127.0.0.1:8084
            ports["outbound"] = 8084
        else:
            host, port, password = "127.0.0.1", ports["esl"], "ClueCon"
        env = {
            "CALLFORK_FREESWITCH_ESL_HOST": host,
            "CALLFORK_FREESWITCH_ESL_PORT": str(port),
            "CALLFORK_FREESWITCH_ESL_PASSWORD": password,
            "CALLFORK_SERVER_OUTBOUND_LISTEN": f"127.0.0.1:{ports['outbound']}",
            "CALLFORK_SERVER_HTTP_LISTEN": f"127.0.0.1:{ports['http']}",
            "CALLFORK_SERVER_RELAY_LISTEN": f"127.0.0.1:{ports['relay']}",
            "CALLFORK_SERVER_PUBLIC_URL": f"http://127.0.0.1:{ports['http']}",
            "CALLFORK_SERVER_DATA_DIR": str(self.data_dir),
            "CALLFORK_SERVER_AUTH_TOKEN": "test-token",
            "CALLFORK_AUDIO_FORK_FLAVOR": self.flavor,
            "CALLFORK_WEBHOOKS_BACKOFF_BASE_S": "0.05",
            "CALLFORK_WEBHOOKS_BACKOFF_MAX_S": "0.2",
        }
        env.update(self._env)
        fallback = f'fallback_url = "{self.app.url(self.fallback_path)}"\n' if self.fallback_path else ""
        config_file = self.data_dir / "callfork.toml"
        config_file.write_text(
            self.config_text
            + f'[[numbers]]\nnumber = "*"\nanswer_url = "{self.app.url(self.answer_path)}"\n'
            f'hangup_url = "{self.app.url(self.hangup_path)}"\n' + fallback)
        self.config = load_config(str(config_file), env=env)
        if not self.real_fs:
            self.sim = Simulator(esl=("127.0.0.1", ports["esl"]), password=password,
                                 socket_target=("127.0.0.1", ports["outbound"]), flavor=self.flavor)
            self.sim.start()
        self.service = Service(self.config).start()
        if not self.service.control.wait_connected(10):
            raise RuntimeError("callfork did not connect to FreeSWITCH's event socket")
        self.http_url = f"http://127.0.0.1:{ports['http']}"
        return self

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
        if self.sim is not None:
            self.sim.stop()
        self.app.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- calls -----------------------------------------------------------------------------------
    def call(self, to: str = "1000", **script):
        """Place an inbound call from a scripted caller; returns an object with `.wait(timeout) ->
        summary` (uuid, answered, hangup_cause, duration_s, events). On the simulator it is the
        SimCall; on a real FreeSWITCH a loopback call whose A leg is the caller (see RealCall)."""
        if self.real_fs:
            return RealCall(self, to, **script)
        return self.sim.place_call(CallScript(to=to, **script))

    def api_headers(self) -> dict:
        return {"X-Auth-ID": self.config.server.auth_id, "X-Auth-Token": "test-token"}

    def api_url(self, path: str) -> str:
        return f"{self.http_url}/api/v1/Account/{self.config.server.auth_id}{path}"

    def wait(self, predicate, timeout: float = 10.0) -> None:
        wait_until(predicate, timeout)
