"""Shared machinery of the Vobiz engine scenarios (tests/test_scenario_vobiz_*.py); holds no tests.

`Scenarios` runs many calls at once on one `harness.Stack`: each scenario gets its own called
number, its answer document is chosen by the `To` form field of the answer request, and the paths
it uses on the user's app are prefixed with its name. Calls start together when the module
fixture starts them, so a module costs about as long as its longest call. `result(name)` waits
for that call's end and its hangup webhook and gives everything observed about it: the simulator
summary, every webhook the app received for it (matched on CallUUID), the apps the simulated
FreeSWITCH executed (CHANNEL_EXECUTE Application / Application-Data, seen at the simulator's
event delivery), the log records mentioning it, and the call record.
"""
from __future__ import annotations

import collections
import io
import itertools
import logging
import socket
import threading
import time

import gevent
import numpy as np
import soundfile

from http_receiver import Reply

CALLFORK_LOGGERS = ("callfork", "esl_app", "verbs", "webhooks", "audio_fork")
_RESERVED = []


def refused_url() -> str:
    """A loopback URL where connections are refused: the port is bound but never listens, and stays
    reserved for the whole test session (a port that was merely free could be reused meanwhile)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _RESERVED.append(sock)
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


class LogCollector(logging.Handler):
    """Every log record of the process while a module's calls run."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock = threading.Lock()

    def emit(self, record):
        with self._lock:
            self.records.append(record)

    def ours(self):
        return [r for r in list(self.records) if r.name.startswith(CALLFORK_LOGGERS)]

    def tracebacks(self):
        """Records of our loggers that carry a traceback (log.exception) or are CRITICAL."""
        return [r for r in self.ours() if r.exc_info or r.levelno >= logging.CRITICAL]

    def mentioning(self, text: str, level=logging.DEBUG):
        out = []
        for r in self.ours():
            try:
                message = r.getMessage()
            except Exception:
                continue
            if r.levelno >= level and text in message:
                out.append(r)
        return out


class CallResult:
    def __init__(self, scenarios, name, call, summary):
        self.name = name
        self.uuid = call.uuid
        self.call = call
        self.summary = summary
        self._s = scenarios

    @property
    def requests(self):
        """Every request the app received for this call (answer, actions, callbacks, hangup)."""
        return [req for req in list(self._s.stack.app.requests) if self._s.form(req).get("CallUUID") == self.uuid]

    def forms(self, event=None, path=None):
        out = []
        for req in self.requests:
            form = self._s.form(req)
            if event is not None and form.get("Event") != event:
                continue
            if path is not None and req.path != self._s.path(self.name, path):
                continue
            out.append(form)
        return out

    def wait_event(self, event, count=1, timeout=10.0):
        app = self._s.stack.app
        app.wait_for(lambda: len(self.forms(event)) >= count, timeout)
        found = self.forms(event)
        assert len(found) >= count, f"{self.name}: {count} x Event={event} expected, got {len(found)}: " \
                                    f"{[f.get('Event') for f in self.forms()]}"
        return found[0] if count == 1 else found

    def wait_path(self, path, count=1, timeout=10.0):
        full = self._s.path(self.name, path)
        app = self._s.stack.app
        app.wait_for(lambda: len([r for r in app.requests if r.path == full]) >= count, timeout)
        found = [r for r in app.requests if r.path == full]
        assert len(found) >= count, f"{self.name}: {count} requests to {full} expected, got {len(found)}"
        return found

    @property
    def hangup(self):
        return self.wait_event("Hangup")

    @property
    def apps(self):
        """[(application, data)] in the order the simulated FreeSWITCH started them."""
        return [(a, d) for a, d, _t in self.app_times]

    @property
    def app_times(self):
        """[(application, data, time started)]."""
        return [a for a in self._s.executed.get(self.uuid, []) if a[0] != "socket"]

    def app_data(self, app):
        return [data for name, data in self.apps if name == app]

    def logs(self, level=logging.DEBUG):
        return [r.getMessage() for r in self._s.logs.mentioning(self.uuid, level)]

    def errors(self):
        return self.logs(logging.ERROR)

    def record(self):
        return self._s.stack.service.store.get_call(self.uuid)

    def timeline(self):
        return self._s.stack.service.store.timeline(self.uuid)

    def no_tracebacks(self):
        bad = [r for r in self._s.logs.tracebacks() if self.uuid in _message(r)]
        assert not bad, "tracebacks logged: " + "; ".join(_message(r) for r in bad)


def _message(record) -> str:
    try:
        return record.getMessage()
    except Exception:
        return str(record.msg)


class Scenarios:
    """Many concurrent scenario calls on one Stack (see the module docstring)."""

    _numbers = itertools.count(7000)

    def __init__(self, stack):
        self.stack = stack
        self.base = stack.app.url("").rstrip("/")
        self.docs = {}            # called number -> document (str, bytes, Reply or callable(req))
        self.numbers = {}         # name -> called number
        self.scripts = {}         # name -> CallScript kwargs
        self.calls = {}           # name -> SimCall
        self.executed = collections.defaultdict(list)
        self._forms = {}          # id(request) -> (request, parameters)
        self.by_number = {}       # called number -> scenario name
        self.reactions = {}       # scenario name -> [{"spec": (app, text, action, delay), "done": bool}]
        self.logs = LogCollector()
        root = logging.getLogger()
        root.addHandler(self.logs)
        self._root_level = root.level
        if root.level > logging.INFO:
            root.setLevel(logging.INFO)
        stack.app.document(stack.answer_path, self.answer)
        sim = stack.sim
        original = sim.deliver

        def deliver(ev, divert_to=None):
            if ev.name == "CHANNEL_EXECUTE":
                self.executed[ev.get("Unique-ID")].append(
                    (ev.get("Application"), ev.get("Application-Data") or "", time.time()))
                self._react(ev)
            return original(ev, divert_to=divert_to)
        sim.deliver = deliver

    def _react(self, ev):
        """The scripted caller reacting to what it hears: see `add(react=...)`."""
        name = self.by_number.get(ev.get("Caller-Destination-Number"))
        app, data = ev.get("Application"), ev.get("Application-Data") or ""
        for reaction in self.reactions.get(name, ()):
            want_app, contains, action, delay = reaction["spec"]
            if reaction["done"] or app != want_app or contains not in data:
                continue
            reaction["done"] = True
            gevent.spawn_later(delay, self._act, ev.get("Unique-ID"), action)

    def _act(self, uuid, action):
        ch = self.stack.sim.get_channel(uuid)
        if ch is None:
            return
        if action == "hangup":
            ch.hangup("NORMAL_CLEARING")
        else:
            for digit in action:
                ch.queue_dtmf(digit)

    def hang_up(self, req):
        """From a request handler of the app: the caller hangs up now (the call of that request)."""
        self._act(self.form(req).get("CallUUID"), "hangup")

    def close(self):
        root = logging.getLogger()
        root.removeHandler(self.logs)
        root.setLevel(self._root_level)

    def form(self, req) -> dict:
        """The request's parameters (form body or query), parsed once."""
        cached = self._forms.get(id(req))
        if cached is None or cached[0] is not req:
            cached = (req, req.form if req.method == "POST" else req.args)
            self._forms[id(req)] = cached
        return cached[1]

    def path(self, name, path):
        return f"/{name}{path}"

    def url(self, name, path):
        return self.base + self.path(name, path)

    def serve(self, name, path, body, content_type="application/xml", status=200):
        """Serve `body` at /<name><path> on the app; returns its URL."""
        return self.stack.app.document(self.path(name, path), body, content_type, status)

    def add(self, name, doc, number=None, react=(), **script):
        """A scenario: `doc` (str with {app} = this scenario's base URL, or bytes/Reply/callable)
        answers the call; `script` are CallScript arguments; `number`: a called number with its own
        [[numbers]] entry in the Stack's config. `react`: [(app, text, action, delay)]: when the
        simulated FreeSWITCH starts `app` with `text` in its argument (first time only), the caller
        presses the digits `action` (or "hangup"s) `delay` seconds later — so digits arrive while a
        prompt plays whatever the machine's load, unlike fixed times after the call starts.
        Returns the scenario's base URL."""
        number = number or str(next(self._numbers))
        self.by_number[number] = name
        self.reactions[name] = [{"spec": tuple(r), "done": False} for r in react]
        base = self.url(name, "")
        if isinstance(doc, str):
            doc = doc.replace("{app}", base)
        self.docs[number] = doc
        self.numbers[name] = number
        script.setdefault("hangup_after", 20)
        self.scripts[name] = script
        return base

    def answer(self, req):
        """The app's answer to `req`: the document of the scenario whose number was called."""
        form = req.form if req.method == "POST" else req.args
        doc = self.docs.get(form.get("To", ""))
        if doc is None:
            return Reply(404, b"no such scenario", "text/plain")
        if callable(doc):
            doc = doc(req)
        if isinstance(doc, Reply):
            return doc
        if isinstance(doc, str):
            doc = doc.encode()
        return Reply(200, doc, "application/xml")

    def start(self, *names):
        for name in names or list(self.numbers):
            if name not in self.calls:
                self.calls[name] = self.stack.call(to=self.numbers[name], **self.scripts[name])

    def result(self, name, timeout=40.0) -> CallResult:
        if name not in self.calls:
            self.start(name)
        call = self.calls[name]
        summary = call.wait(timeout)
        res = CallResult(self, name, call, summary)
        res.hangup  # noqa: B018  (the hangup webhook is the end of every scenario)
        return res


# -- shared by the Vobiz scenario modules ------------------------------------------------------

RATE = 8000

HANGUP_FIELDS = ("CallUUID", "From", "To", "Direction", "CallStatus", "CallerName", "Event", "HangupCause",
                 "HangupCauseCode", "HangupCauseName", "HangupSource", "Duration", "BillDuration",
                 "StartTime", "AnswerTime", "EndTime", "SessionStart", "ParentAuthID", "BillRate",
                 "TotalCost", "STIRAttestation", "STIRVerification", "Error")


def tone(seconds, freq=300.0, amp=0.3, rate=RATE):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def wav_bytes(samples, rate=RATE, fmt="WAV"):
    buf = io.BytesIO()
    soundfile.write(buf, samples, rate, format=fmt, **({"subtype": "PCM_16"} if fmt == "WAV" else {}))
    return buf.getvalue()


def caller_audio(tmp_dir, name, talk_from, talk_until, seconds=12.0):
    """The caller is silent, talks (a 300 Hz tone) from `talk_from` to `talk_until`, then is silent."""
    t = np.arange(int(seconds * RATE)) / RATE
    audio = 0.3 * np.sin(2 * np.pi * 300 * t) * ((t >= talk_from) & (t < talk_until))
    path = tmp_dir / f"{name}.wav"
    soundfile.write(str(path), (audio * 32767).astype(np.int16), RATE)
    return str(path)


WAV = wav_bytes(tone(0.4, 440))
MP3 = wav_bytes(tone(0.4, 660), fmt="MP3")
