"""The lean FreeSWITCH stand-in of the calls benchmark (`python -m bench calls --switch lean`): the
event-socket side of FreeSWITCH for callfork, and the call driver, at a small fraction of the
simulator's CPU per call (the way bench/common.py's load generator stands in for mod_audio_fork).

Owns, in one gevent process (`python -m bench.lean_switch`, the same control commands as
`python -m bench.calls switch`: target, run, cpu):

* the inbound event socket for callfork's control connection: `auth/request`, `auth <password>`,
  `event plain|json BACKGROUND_JOB` (the format is recorded), `exit`;
* per call, what `socket <callfork> async full` does: connect to callfork's outbound server, then
  answer, in order (commands may arrive pipelined), `connect` (the captured CHANNEL_DATA reply),
  `linger [N]`, `nolinger`, `myevents [plain|json]` (FreeSWITCH's myevents list, this call only),
  `event plain|json ...` (adds names; the last one sets the format), `api uuid_setvar` and `uuid_setvar_multi` (the
  variable then appears in later events), `api uuid_kill`, `api uuid_break`, `sendmsg` with
  `call-command: execute` (event-lock, Event-UUID = Application-UUID, arg in a header or the body)
  or `call-command: hangup`, and `exit` (`+OK bye`, the final disconnect notice, close);
* apps: `answer` (CHANNEL_EXECUTE, CHANNEL_ANSWER, [CHANNEL_CALLSTATE], CHANNEL_EXECUTE_COMPLETE at
  once), `speak` (complete after the simulator's synthetic TTS duration: 65 ms per character, in
  20 ms frames), `playback` of a local audio file (its duration read with soundfile; PLAYBACK_START,
  PLAYBACK_STOP, complete with FILE PLAYED), `hangup`; queued sendmsgs run one after the other;
* the hangup path as FreeSWITCH sends it to a `myevents` socket: CHANNEL_HANGUP, the running app's
  EXECUTE_COMPLETE, CHANNEL_UNPARK, the socket app's EXECUTE_COMPLETE, CHANNEL_STATE (CS_HANGUP),
  [CHANNEL_CALLSTATE], CHANNEL_STATE (CS_REPORTING), CHANNEL_HANGUP_COMPLETE (with the CDR
  variables), then the linger disconnect notice (`Linger-Time: -1` for a plain `linger`; the final
  notice and close after N seconds for `linger N`; with no linger the final notice follows
  CHANNEL_HANGUP and later events are not sent).

Frames come from bench/lean_events.py (templates from the real FreeSWITCH capture). Only events the
connection subscribed to are sent, in the format it chose. The first app runs at once: there is no
park loop, so no 0-20 ms media tick between callfork's `sendmsg` and its CHANNEL_EXECUTE (the
simulator and FreeSWITCH have one). The replies to the commands that arrived in one read (pipelined
commands are answered in order) and the events they cause go out in one write.

Not modelled (each is a loud failure: logged, answered with `-ERR`, and the call counted as failed
in the benchmark's table; never a silent +OK): other commands and APIs, other apps, sendmsg without
`event-lock: true` (PRIVATE_COMMAND, nesting), `loops` other than 1, `event xml`, `ALL`,
`api`/`bgapi` on the control connection, DTMF and media, dialled legs (`bridge`): an inbound
connection may subscribe to their events and `filter` (stored and answered as FreeSWITCH does), but
no call ever makes one. CUSTOM subscriptions are accepted: their
events (mod_audio_fork::*) only follow `uuid_audio_fork`, an API that is not modelled.
CHANNEL_PARK is not sent: callfork subscribes after the channel parked (as the simulator shows).

Per call it stamps (CLOCK_MONOTONIC ns), as bench/calls.py's simulator driver does: created, the
socket connection to callfork opened, the first `sendmsg execute` from callfork parsed, the
CHANNEL_EXECUTE of that app built (then written at once), the end (CHANNEL_HANGUP_COMPLETE built).
"""
if __name__ == "__main__":
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # see bench/common.py harness_process
    from gevent import monkey

    monkey.patch_all()

import logging  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid as uuid_mod  # noqa: E402

from gevent.event import Event  # noqa: E402

from bench import common  # noqa: E402
from bench.lean_events import CDR_TIME_VARS, Q850, Frames  # noqa: E402

log = logging.getLogger("bench.lean_switch")

GOODBYE = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
MYEVENTS = frozenset((
    "CHANNEL_ANSWER", "CHANNEL_APPLICATION", "CHANNEL_BRIDGE", "CHANNEL_CREATE", "CHANNEL_DATA",
    "CHANNEL_DESTROY", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_ORIGINATE", "CHANNEL_UUID", "CHANNEL_OUTGOING", "CHANNEL_PARK",
    "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_STATE", "CHANNEL_UNBRIDGE", "CHANNEL_UNPARK",
    "DETECTED_SPEECH", "DTMF", "NOTALK", "TALK"))
CONTROL_EVENTS = frozenset(("BACKGROUND_JOB",))   # the control connection gets nothing else here
# callfork's connection for dialled legs (esl_app.LegEvents) subscribes to these and filters on leg
# UUIDs; lean calls never dial, so none of them is ever sent
LEG_EVENTS = frozenset(("CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER", "CHANNEL_BRIDGE",
                        "CHANNEL_UNBRIDGE", "CHANNEL_HANGUP_COMPLETE", "DTMF"))
TTS_MS_PER_CHAR = 65           # switch_sim.media's synthetic speech
FRAME_MS = 20
FIRST_COMMAND_S = 25.0         # mod_event_socket's window for the first command
RINGING = ("CS_EXECUTE", "RINGING", "4", "ringing")
ANSWERING = ("CS_EXECUTE", "RINGING", "4", "answered")
ACTIVE = ("CS_EXECUTE", "ACTIVE", "4", "answered")
EXEC_TAIL = ("Application", "Application-UUID")
EXEC_TAIL_DATA = ("Application", "Application-Data", "Application-UUID")
DONE_TAIL = ("Application", "Application-Response", "Application-UUID")
DONE_TAIL_DATA = ("Application", "Application-Data", "Application-Response", "Application-UUID")


class NotModelled(Exception):
    """Something callfork sent that the lean switch does not model (a loud failure)."""


def parse_packets(buf: bytes):
    """Complete client packets in `buf` -> ([(command line, {lower-case header: value}, body)], rest)."""
    out = []
    while True:
        i = 0
        n = len(buf)
        while i < n and buf[i] in (10, 13):   # blank lines between packets
            i += 1
        end = buf.find(b"\n\n", i)
        if end < 0:
            return out, buf[i:]
        lines = buf[i:end].decode("utf-8", "replace").split("\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        pos = end + 2
        body = None
        clen = headers.get("content-length")
        if clen is not None:
            clen = int(clen)
            if n - pos < clen:
                return out, buf[i:]
            body = buf[pos:pos + clen].decode("utf-8", "replace")
            pos += clen
        out.append((lines[0].strip(), headers, body))
        buf = buf[pos:]


def reply(text: str) -> bytes:
    return ("Content-Type: command/reply\nReply-Text: %s\n\n" % text).encode("utf-8")


def api_response(body: str) -> bytes:
    data = body.encode("utf-8")
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(data) + data


class LeanCall:
    """One call: its outbound socket to callfork, its channel state and variables, its stamps."""

    def __init__(self, sw, st: dict, to: str):
        self.sw = sw
        self.st = st
        self.frames = sw.frames
        self.uuid = str(uuid_mod.uuid4())
        self.socket_app_uuid = str(uuid_mod.uuid4())
        now_us = int(time.time() * 1e6)
        self.created_us = now_us
        self.answered_us = 0
        host, port = sw.target
        self.socket_arg = "%s:%d async full" % (host, port)
        self.values = {"uuid": self.uuid, "dest": to, "created_us": str(now_us), "answered_us": "0",
                       "hangup_us": "0", "cause": ""}
        self.vars: dict = {}
        for k, v in (("current_application_data", self.socket_arg), ("current_application", "socket"),
                     ("socket_host", host)):
            self.set_var(k, v)
        self.fmt = "plain"
        self.names: set = set()
        self.myevents = False
        self.linger = None            # None: no linger; -1: until exit; N: seconds
        self.connected = False
        self.answered = False
        self.hungup = False
        self.closed = False
        self.queue: list = []         # queued (app, arg, app_uuid)
        self.running = None           # (app, arg, app_uuid, kind) of the app in progress
        self.deadline = None          # monotonic time of the pending timer, and what it does
        self.on_deadline = None
        self.out: list = []
        self.last_app = ("", "")
        self.ended = Event()

    # -- helpers ---------------------------------------------------------------------------------
    def set_var(self, name: str, value: str) -> None:
        """switch_channel_set_variable: a set moves the variable to the end; empty unsets."""
        self.vars.pop(name, None)
        self.values.pop("v:" + name, None)
        if value != "" and value is not None:
            self.vars[name] = value
            self.values["v:" + name] = value

    def fail(self, what: str) -> None:
        log.error("[%s] NOT MODELLED by the lean switch: %s", self.uuid, what)
        self.sw.not_modelled += 1
        self.st.setdefault("error", what)

    def emit(self, name: str, state: tuple, tail: tuple = (), location=None, pre=(), layout=None) -> None:
        self.sw.seq += 1          # FreeSWITCH numbers every event fired, delivered or not
        if name not in self.names or self.closed:
            return
        now = time.time()
        v = self.values
        v["date_local"], v["date_gmt"] = self.frames.dates(now)
        v["date_ts"] = str(int(now * 1e6))
        v["seq"] = str(self.sw.seq)
        self.out.append(self.frames.event(self.fmt, name, state, tuple(self.vars) if layout is None else layout,
                                          tail, location, pre, v))

    def flush(self) -> None:
        if self.out and not self.closed:
            data = b"".join(self.out)
            self.out = []
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True
        else:
            self.out = []

    def state(self) -> tuple:
        if self.hungup:
            return ("CS_EXECUTE", "ACTIVE" if self.answered else "RINGING", "10", "hangup")
        return ACTIVE if self.answered else RINGING

    # -- the connection --------------------------------------------------------------------------
    def run(self) -> None:
        st = self.st
        try:   # a numeric address: no getaddrinfo (gevent would run it in its threadpool)
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.settimeout(5)
            self.sock.connect(self.sw.target)
        except OSError as exc:
            self.sock.close()
            self.fail("cannot connect to callfork's outbound server: %s" % exc)
            self.ended.set()
            return
        st["socket"] = common.now_ns()
        sock = self.sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.deadline = time.monotonic() + FIRST_COMMAND_S
        self.on_deadline = lambda: self.fail("no command within %.0f s" % FIRST_COMMAND_S) or self.close()
        buf = b""
        try:
            while not self.closed:
                timeout = None
                if self.deadline is not None:
                    timeout = self.deadline - time.monotonic()
                    if timeout <= 0:
                        self._fire()
                        continue
                sock.settimeout(timeout)
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    self._fire()
                    continue
                if not data:
                    if not self.hungup:
                        self.fail("callfork closed the socket before the call ended")
                    break
                buf += data
                packets, buf = parse_packets(buf)
                for packet in packets:   # pipelined commands: replies in order, one write
                    self.handle(*packet)
                    if self.closed:
                        break
                self.flush()
        except OSError as exc:
            if not self.hungup:
                self.fail("socket error before the call ended: %s" % exc)
        finally:
            self.closed = True
            try:
                sock.close()
            except OSError:
                pass
            if "ended" not in st:
                st["cause"] = self.values["cause"] or None
            self.ended.set()

    def _fire(self) -> None:
        cb, self.deadline, self.on_deadline = self.on_deadline, None, None
        if cb is not None:
            cb()
        self.flush()

    def close(self) -> None:
        """The final disconnect notice, then close (after what is queued)."""
        if self.closed:
            return
        self.out.append(b"Content-Type: text/disconnect-notice\nControlled-Session-UUID: %s\n"
                        b"Content-Disposition: disconnect\nContent-Length: %d\n\n%s"
                        % (self.uuid.encode(), len(GOODBYE), GOODBYE))
        self.flush()
        self.closed = True

    # -- commands --------------------------------------------------------------------------------
    def handle(self, line: str, headers: dict, body) -> None:
        cmd, _, args = line.partition(" ")
        cmd = cmd.lower()
        args = args.strip()
        try:
            if not self.connected:
                if cmd != "connect":
                    raise NotModelled("first command %r (FreeSWITCH drops the reply of anything but connect)" % line)
                self.connected = True
                self.deadline = self.on_deadline = None
                self.out.append(self.connect_reply())
            elif cmd == "connect":
                self.out.append(self.connect_reply())
            elif cmd == "linger":
                if args and args.lstrip("-").isdigit() and int(args) > 0:
                    self.linger = int(args)
                    self.out.append(reply("+OK will linger %d seconds" % self.linger))
                else:
                    self.linger = -1
                    self.out.append(reply("+OK will linger"))
            elif cmd == "nolinger":
                self.linger = None
                self.out.append(reply("+OK will not linger"))
            elif cmd == "myevents":
                if self.myevents:
                    self.out.append(reply("-ERR aready enabled."))
                else:
                    for tok in args.split():
                        if tok.lower() in ("plain", "json"):
                            self.fmt = tok.lower()
                        else:
                            raise NotModelled("myevents %s" % args)
                    self.myevents = True
                    self.names |= MYEVENTS
                    self.out.append(reply("+OK Events Enabled"))
            elif cmd == "event":
                self.fmt, names = parse_event_command(args)
                self.names |= names
                self.out.append(reply("+OK event listener enabled %s" % self.fmt))
            elif cmd == "api":
                self.api(args)
            elif cmd == "sendmsg":
                self.sendmsg(args, headers, body)
            elif cmd in ("exit", "..."):
                self.out.append(reply("+OK bye"))
                self.close()
            else:
                raise NotModelled("command %r" % line)
        except NotModelled as exc:
            self.fail(str(exc))
            self.out.append(reply("-ERR lean switch does not model: %s" % str(exc).replace("\n", " ")[:200]))

    def connect_reply(self) -> bytes:
        v = self.values
        now = time.time()
        v["date_local"], v["date_gmt"] = self.frames.dates(now)
        v["date_ts"] = str(int(now * 1e6))
        self.sw.seq += 1
        v["seq"] = str(self.sw.seq)
        return self.frames.connect_reply(v, tuple(self.vars))

    def api(self, args: str) -> None:
        command, _, rest = args.partition(" ")
        parts = rest.split(" ", 2)
        if command in ("uuid_setvar", "uuid_setvar_multi", "uuid_kill", "uuid_break") and parts and parts[0] != self.uuid:
            raise NotModelled("api %s for another channel (%s)" % (command, parts[0]))
        if command == "uuid_setvar" and len(parts) >= 2:
            self.set_var(parts[1], parts[2] if len(parts) > 2 else "")
            self.out.append(api_response("+OK\n"))
        elif command == "uuid_setvar_multi" and len(parts) >= 2:
            for item in " ".join(parts[1:]).split(";"):
                name, _, value = item.partition("=")
                if name:
                    self.set_var(name, value)
            self.out.append(api_response("+OK\n"))
        elif command == "uuid_kill":
            self.out.append(api_response("+OK\n"))
            self.hangup(parts[1] if len(parts) > 1 and parts[1] else "NORMAL_CLEARING")
        elif command == "uuid_break":
            self.out.append(api_response("+OK\n"))
            if len(parts) > 1 and parts[1] == "all":
                self.queue = []
            if self.running and self.running[3] in ("speak", "playback"):
                self.deadline = time.monotonic()   # completes now (in the read loop)
        else:
            raise NotModelled("api %s" % args)

    def sendmsg(self, args: str, headers: dict, body) -> None:
        if args and args != self.uuid:
            raise NotModelled("sendmsg to another channel (%s)" % args)
        what = headers.get("call-command", "")
        if what == "hangup":
            self.out.append(reply("+OK"))
            self.hangup(headers.get("hangup-cause") or "NORMAL_CLEARING")
            return
        if what != "execute":
            raise NotModelled("sendmsg call-command %r" % what)
        app = headers.get("execute-app-name", "")
        arg = headers.get("execute-app-arg")
        if arg is None:
            arg = body or ""
        if headers.get("event-lock", "").lower() != "true":
            raise NotModelled("sendmsg without event-lock: true (%s)" % app)
        if headers.get("loops", "1") != "1":
            raise NotModelled("sendmsg loops=%s" % headers["loops"])
        if app not in APPS:
            raise NotModelled("app %s" % app)
        if "sendmsg" not in self.st:
            self.st["sendmsg"] = common.now_ns()
        self.out.append(reply("+OK"))
        if self.hungup:
            log.info("[%s] sendmsg %s after hangup ignored", self.uuid, app)
            return
        self.queue.append((app, arg, headers.get("event-uuid") or str(uuid_mod.uuid4())))
        if self.running is None:
            self.next_app()

    # -- apps ------------------------------------------------------------------------------------
    def next_app(self) -> None:
        while self.running is None and self.queue and not self.hungup:
            app, arg, app_uuid = self.queue.pop(0)
            self.start_app(app, arg, app_uuid)

    def start_app(self, app: str, arg: str, app_uuid: str) -> None:
        v = self.values
        self.set_var("current_loop", "1")
        self.set_var("total_loops", "1")
        self.set_var("current_application_response", "")
        self.set_var("current_application_data", "")
        self.set_var("current_application", app)
        if arg:
            self.set_var("current_application_data", arg)
        v["Application"], v["Application-Data"], v["Application-UUID"] = app, arg, app_uuid
        self.last_app = (app, arg)
        if "exec" not in self.st:
            self.st["exec"] = common.now_ns()
            self.st["app"] = app
        self.emit("CHANNEL_EXECUTE", self.state(), EXEC_TAIL_DATA if arg else EXEC_TAIL)
        if arg:   # after the EXECUTE event FreeSWITCH's list reads ..., data, app
            self.set_var("current_application", app)
        self.running = (app, arg, app_uuid, app)
        APPS[app](self, arg)

    def complete_app(self, response: str = "_none_") -> None:
        app, arg, app_uuid, _kind = self.running
        v = self.values
        v["Application"], v["Application-Data"], v["Application-UUID"] = app, arg, app_uuid
        v["Application-Response"] = response
        self.emit("CHANNEL_EXECUTE_COMPLETE", self.state(), DONE_TAIL_DATA if arg else DONE_TAIL)
        self.set_var("current_loop", "")
        self.set_var("total_loops", "")
        self.running = None
        self.deadline = self.on_deadline = None
        if not self.hungup:
            self.next_app()

    def app_answer(self, _arg: str) -> None:
        if not self.answered:
            now_us = int(time.time() * 1e6)
            self.answered_us = now_us
            self.values["answered_us"] = str(now_us)
            self.answered = True
            self.emit("CHANNEL_ANSWER", ANSWERING)
            self.set_var("endpoint_disposition", "ANSWER")
            self.values["ocs"], self.values["csn"] = "RINGING", "4"
            self.emit("CHANNEL_CALLSTATE", ACTIVE, pre=(("Original-Channel-Call-State", "ocs"),
                                                        ("Channel-Call-State-Number", "csn")))
        self.complete_app()

    def app_speak(self, arg: str) -> None:
        parts = arg.split("|", 2)
        text = parts[2] if len(parts) == 3 else parts[-1]
        frames = -(-len(text) * TTS_MS_PER_CHAR // FRAME_MS)
        self.deadline = time.monotonic() + frames * FRAME_MS / 1000
        self.on_deadline = self.complete_app

    def app_playback(self, arg: str) -> None:
        import soundfile

        try:
            info = soundfile.info(arg)
            samples, rate = info.frames, info.samplerate
        except (OSError, RuntimeError, soundfile.LibsndfileError) as exc:
            self.fail("playback of %r (only local audio files are modelled): %s" % (arg, exc))
            self.complete_app("FILE NOT FOUND")
            return
        v = self.values
        v["Playback-File-Path"] = arg
        self.emit("PLAYBACK_START", self.state(), ("Playback-File-Path",))
        started = time.monotonic()

        def done():
            ms = int((time.monotonic() - started) * 1000)
            played = min(samples, ms * rate // 1000)
            self.set_var("playback_last_offset_pos", str(played))
            self.set_var("playback_seconds", str(played // max(1, rate)))
            self.set_var("playback_ms", str(played * 1000 // max(1, rate)))
            self.set_var("playback_samples", str(played))
            v["Playback-File-Path"] = arg
            v["Playback-Status"] = "done" if played >= samples else "break"
            self.emit("PLAYBACK_STOP", self.state(), ("Playback-File-Path", "Playback-Status"))
            self.set_var("current_application_response", "FILE PLAYED")
            self.complete_app("FILE PLAYED")

        self.deadline = started + samples / max(1, rate)
        self.on_deadline = done

    def app_hangup(self, arg: str) -> None:
        self.hangup(arg or "NORMAL_CLEARING")

    # -- the end ---------------------------------------------------------------------------------
    def hangup(self, cause: str) -> None:
        if self.hungup:
            return
        v = self.values
        self.hungup = True
        now_us = int(time.time() * 1e6)
        v["hangup_us"] = str(now_us)
        v["cause"] = cause
        self.emit("CHANNEL_HANGUP", self.state())
        if self.linger is None:      # no linger: the final notice now, later events are lost
            self.close()
        if self.running is not None:
            self.complete_app()
        self.queue = []
        hup = self.state()
        self.emit("CHANNEL_UNPARK", hup)
        v["Application"], v["Application-Data"] = "socket", self.socket_arg
        v["Application-UUID"], v["Application-Response"] = self.socket_app_uuid, "_none_"
        self.emit("CHANNEL_EXECUTE_COMPLETE", hup, DONE_TAIL_DATA)
        cs = hup[1]
        self.emit("CHANNEL_STATE", ("CS_HANGUP", cs, "10", "hangup"))
        v["ocs"], v["csn"] = cs, "7"
        self.emit("CHANNEL_CALLSTATE", ("CS_HANGUP", "HANGUP", "10", "hangup"),
                  pre=(("Original-Channel-Call-State", "ocs"), ("Channel-Call-State-Number", "csn")))
        reporting = ("CS_REPORTING", "HANGUP", "11", "hangup")
        self.emit("CHANNEL_STATE", reporting)
        self.set_cdr_variables(now_us, cause)
        self.emit("CHANNEL_HANGUP_COMPLETE", reporting, pre=(("Hangup-Cause", "cause"),))
        self.st["ended"] = common.now_ns()
        self.st["cause"] = cause
        if self.linger is not None and not self.closed:
            self.out.append(b"Content-Type: text/disconnect-notice\nControlled-Session-UUID: %s\n"
                            b"Content-Disposition: linger\nChannel-Name: %s\nLinger-Time: %d\nContent-Length: 0\n\n"
                            % (self.uuid.encode(), self.sw.channel_name, self.linger))
            if self.linger >= 0:
                self.deadline = time.monotonic() + self.linger
                self.on_deadline = self.close
        self.ended.set()

    def set_cdr_variables(self, end_us: int, cause: str) -> None:
        start, answer = self.created_us, self.answered_us

        def stamp(us):
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(us / 1e6))

        billed = end_us - answer if answer else 0
        values = {
            "hangup_cause": cause, "hangup_cause_q850": str(Q850.get(cause, 0)), "digits_dialed": "none",
            "start_stamp": stamp(start), "profile_start_stamp": stamp(start),
            "answer_stamp": stamp(answer) if answer else "", "end_stamp": stamp(end_us),
            "start_epoch": str(start // 1_000_000), "start_uepoch": str(start),
            "profile_start_epoch": str(start // 1_000_000), "profile_start_uepoch": str(start),
            "answer_epoch": str(answer // 1_000_000), "answer_uepoch": str(answer),
            "end_epoch": str(end_us // 1_000_000), "end_uepoch": str(end_us),
            "last_app": self.last_app[0], "last_arg": self.last_app[1],
            "duration": str((end_us - start) // 1_000_000), "billsec": str(billed // 1_000_000),
            "answersec": str((answer - start) // 1_000_000 if answer else 0),
            "flow_billsec": str((end_us - start) // 1_000_000), "mduration": str((end_us - start) // 1000),
            "billmsec": str(billed // 1000), "answermsec": str((answer - start) // 1000 if answer else 0),
            "flow_billmsec": str((end_us - start) // 1000), "uduration": str(end_us - start),
            "billusec": str(billed), "answerusec": str(answer - start if answer else 0),
            "flow_billusec": str(end_us - start),
        }
        const = self.frames.cdr_const
        for name in CDR_TIME_VARS:
            self.set_var(name, values[name] if name in values else const.get(name, "0"))


APPS = {"answer": LeanCall.app_answer, "speak": LeanCall.app_speak, "playback": LeanCall.app_playback,
        "hangup": LeanCall.app_hangup}


def parse_event_command(args: str) -> tuple:
    """`event [plain|json] NAME ... [CUSTOM sub ...]` -> (format, names); what is not modelled raises."""
    tokens = args.split()
    fmt = "plain"
    if tokens and tokens[0].lower() in ("plain", "json", "xml"):
        fmt = tokens.pop(0).lower()
    if fmt == "xml":
        raise NotModelled("event xml")
    if not tokens:
        raise NotModelled("event without names")
    names = set()
    custom = False
    for tok in tokens:
        if custom:
            continue            # CUSTOM subclasses: nothing here fires CUSTOM events
        up = tok.upper()
        if up == "CUSTOM":
            custom = True
        elif up == "ALL":
            raise NotModelled("event %s ALL (every event of the switch)" % fmt)
        else:
            names.add(up)
    return fmt, names


def filter_reply(args: str) -> str:
    """mod_event_socket's answer to `filter <header> <value>` / `filter delete <header> [<value>]`."""
    parts = args.split(None, 1)
    if parts and parts[0].lower() == "delete" and len(parts) > 1:
        header, _, value = parts[1].partition(" ")
        return "+OK filter deleted. [%s][%s]" % (header, value)
    if len(parts) == 2:
        return "+OK filter added. [%s]=[%s]" % (parts[0], parts[1])
    return "-ERR invalid syntax"


class LeanSwitch:
    def __init__(self, password: str = "ClueCon"):
        self.frames = Frames()
        self.channel_name = dict(self.frames.captured[0][0])["Channel-Name"].encode()
        self.password = password
        self.seq = 1000
        self.target = ("127.0.0.1", 9)
        self.not_modelled = 0
        self.control_errors: list = []
        self.control_format = None
        self.control_events: set = set()
        self.leg_events: set = set()     # what the dialled legs' connection subscribed to

    # -- the inbound event socket (callfork's control connection) -------------------------------
    def serve_esl(self, sock, _peer) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        authed = False
        buf = b""
        try:
            sock.sendall(b"Content-Type: auth/request\n\n")
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                packets, buf = parse_packets(buf + data)
                for line, _headers, _body in packets:
                    cmd, _, args = line.partition(" ")
                    cmd = cmd.lower()
                    if cmd == "auth":
                        if args.strip() == self.password:
                            authed = True
                            sock.sendall(reply("+OK accepted"))
                        else:
                            sock.sendall(reply("-ERR invalid"))
                            return
                    elif not authed:
                        self._control_fail("%r before auth" % line)
                        sock.sendall(reply("-ERR command not found"))
                    elif cmd == "event":
                        try:
                            fmt, names = parse_event_command(args)
                            if names - CONTROL_EVENTS - LEG_EVENTS:
                                raise NotModelled("inbound connection events %s (only BACKGROUND_JOB and "
                                                  "dialled legs' are)"
                                                  % " ".join(sorted(names - CONTROL_EVENTS - LEG_EVENTS)))
                        except NotModelled as exc:
                            self._control_fail(str(exc))
                            sock.sendall(reply("-ERR lean switch does not model: %s" % exc))
                            continue
                        if names <= LEG_EVENTS:
                            self.leg_events |= names
                        else:
                            self.control_format = fmt
                            self.control_events |= names
                        sock.sendall(reply("+OK event listener enabled %s" % fmt))
                    elif cmd == "filter":
                        sock.sendall(reply(filter_reply(args)))
                    elif cmd in ("exit", "..."):
                        sock.sendall(reply("+OK bye") + b"Content-Type: text/disconnect-notice\n"
                                     b"Content-Length: %d\n\n%s" % (len(GOODBYE), GOODBYE))
                        return
                    else:
                        self._control_fail(line)
                        sock.sendall(reply("-ERR lean switch does not model: %s" % line[:200]))
        except OSError:
            return
        finally:
            sock.close()

    def _control_fail(self, what: str) -> None:
        log.error("control connection: NOT MODELLED by the lean switch: %s", what)
        self.control_errors.append(what)

    # -- calls ------------------------------------------------------------------------------------
    def place(self, to: str = "1000") -> dict:
        import gevent

        st = {"created": common.now_ns()}
        call = LeanCall(self, st, to)
        st["uuid"] = call.uuid
        st["call"] = call
        gevent.spawn(call.run)
        return st

    @staticmethod
    def wait_end(st: dict, timeout: float = 60.0) -> None:
        st["call"].ended.wait(timeout)
        if "ended" not in st:
            st.setdefault("error", "call did not end within %.0f s" % timeout)

    # control commands (bench.common.serve_control)
    def c_target(self, host: str, port: int) -> dict:
        self.target = (host, int(port))
        return {"ok": True}

    def c_run(self, mode: str, value: float, duration: float, to: str = "1000", max_inflight: int = 200) -> dict:
        from bench.calls import drive

        e0 = len(self.control_errors)
        res = drive(lambda: self.place(to), self.wait_end, mode, value, duration, max_inflight)
        res["control_errors"] = self.control_errors[e0:]
        res["live"] = sum(1 for st in res.pop("states") if not st["call"].closed)
        return res

    def c_cpu(self) -> dict:
        return common.cpu_times()


def main() -> None:
    from gevent.server import StreamServer

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sw = LeanSwitch()
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(128)
    server = StreamServer(lsock, sw.serve_esl)
    server.start()
    common.harness_heap()
    common.serve_control({"target": sw.c_target, "run": sw.c_run, "cpu": sw.c_cpu},
                         {"esl": lsock.getsockname()[1], "pid": os.getpid()})


if __name__ == "__main__":
    main()
