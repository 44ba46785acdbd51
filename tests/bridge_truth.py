"""What FreeSWITCH 1.10.12's `bridge` app does, captured on a real FreeSWITCH over raw inbound ESL
(`event json ALL`) and replayed on the simulator (tests/test_sim_bridge_truth.py).

Each case parks an A-leg (`originate {origination_uuid=A}loopback/9999/default &park()`: the
-a leg of that loopback pair is the A-leg, its -b leg, 9999, answered and parked, is "the caller"),
records it in stereo (record_session, RECORD_STEREO: left what A reads from the caller, right what
A writes to the caller), sets the case's A-leg variables with `sendmsg` execute `set`, then runs
`bridge <dial string>` with `sendmsg` (event-lock), as callfork's <Dial> does on its outbound
socket. The case's actions (kill A or a B-leg, a DTMF from the caller, `uuid_exists`) run at given
moments after a given event; the case ends when the A-leg's bridge completed and every B-leg is
gone. Kept per case: each leg's ordered events with their relevant headers (legs named A, U1, U2...
by origination_uuid, the loopback partners "<name>-b"), the A-leg's variables callfork reads
(from the EXECUTE_COMPLETE of bridge), the B-legs' variables (from their CHANNEL_HANGUP_COMPLETE),
the replies of the actions, timings (the bridge's run time, when each B-leg hung up), and what the
caller heard while the B-legs rang (the dominant frequency of each 200 ms of the right channel),
and, where a case records a B-leg (uuid_record, stereo), what that leg wrote: what the A-leg read.

    python tests/bridge_truth.py capture --esl 127.0.0.1:8021:ClueCon --out tests/fixtures/fs-captures/bridge.json
    python tests/bridge_truth.py sim          # the same cases on the simulator, differences printed
    python tests/bridge_truth.py try <case>.. # some cases on the real switch, printed (not written)

Needs the freeswitch-test configuration (9999 answers and parks, 9998 answers and plays 440 Hz),
mod_loopback's inline dialplan and mod_tone_stream; no callfork, no port 8084.
"""
from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey
    monkey.patch_all()

import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid as uuidlib  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

import truth_capture  # noqa: E402
from truth_capture import esl_connect  # noqa: E402

# the events callfork watches, and what of them is kept
WATCHED = ("CHANNEL_CREATE", "CHANNEL_OUTGOING", "CHANNEL_ORIGINATE", "CHANNEL_PROGRESS",
           "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER", "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE",
           "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE",
           "CHANNEL_PARK", "CHANNEL_UNPARK", "DTMF")
HEADERS = ("Answer-State", "Channel-Call-State", "Hangup-Cause", "Call-Direction", "Channel-Name",
           "Caller-Caller-ID-Name", "Caller-Caller-ID-Number", "Caller-Callee-ID-Name",
           "Caller-Callee-ID-Number", "Caller-Destination-Number", "Caller-Context", "Caller-Source",
           "Other-Type", "Other-Leg-Unique-ID", "Other-Leg-Channel-Name", "Other-Leg-Caller-ID-Number",
           "Other-Leg-Destination-Number", "Bridge-A-Unique-ID", "Bridge-B-Unique-ID",
           "Application", "Application-Data", "Application-Response", "DTMF-Digit")
A_VARIABLES = ("originate_disposition", "originate_failed_cause", "bridge_hangup_cause",
               "last_bridge_hangup_cause", "last_bridge_to", "bridge_to", "signal_bond", "bridge_uuid",
               "last_bridge_role", "DIALSTATUS", "endpoint_disposition", "current_application_response",
               "originated_legs", "originate_causes", "bridge_channel", "last_bridge_proto_specific_hangup_cause",
               "sip_term_status", "hangup_after_bridge", "continue_on_fail", "bridge_terminate_key")
B_VARIABLES = ("origination_uuid", "origination_caller_id_number", "origination_caller_id_name",
               "sip_h_X-VH-Reason", "callfork_dial_a", "leg_timeout", "execute_on_answer",
               "ignore_early_media", "originate_disposition", "endpoint_disposition", "hangup_cause",
               "bridge_hangup_cause", "last_bridge_hangup_cause", "originator", "originator_codec",
               "originate_early_media", "signal_bond", "last_bridge_to", "bridge_uuid", "call_uuid",
               "other_loopback_leg_uuid", "loopback_leg", "dialed_user", "sip_hangup_disposition",
               "callee_id_number", "origination_callee_id_name")

TONE_DIR = Path(tempfile.gettempdir()) / "bridge-truth"      # the recordings (readable by both switches)
FULL = ("origination_caller_id_number=15551230001,origination_caller_id_name=Bob,"
        "sip_h_X-VH-Reason=billing,callfork_dial_a=A")
A_VARS = ["hangup_after_bridge=false", "continue_on_fail=true"]


def cases() -> list[dict]:
    """Each case: `vars` (A-leg `set`s), `dial` (the bridge's argument, {U1}.. the B-legs'
    origination_uuid), `actions` ([after event name on leg, seconds, action]), `listen` (record
    what the caller hears)."""
    # inline apps in a bridge's dial string: ',' would split the legs, so `m:^:` sets the delimiter
    ringing = "loopback/m:^:ring_ready^sleep:30000/default/inline"     # rings, never answers
    return [
        {"name": "answered_then_b_hangs_up", "vars": A_VARS,
         "dial": "{ignore_early_media=false}[origination_uuid={U1},leg_timeout=20," + FULL +
                 "]loopback/9998/default",
         "actions": [["A", "CHANNEL_BRIDGE", 1.5, "kill U1"]], "listen": True},
        {"name": "busy_error_endpoint", "vars": A_VARS, "dial": "[origination_uuid={U1}]error/user_busy",
         "actions": []},
        {"name": "busy_loopback_486", "vars": A_VARS,
         "dial": "[origination_uuid={U1}," + FULL + "]loopback/respond:486/default/inline", "actions": []},
        {"name": "busy_loopback_hangup", "vars": A_VARS,
         "dial": "[origination_uuid={U1}]loopback/hangup:USER_BUSY/default/inline", "actions": []},
        {"name": "reject_603", "vars": A_VARS,
         "dial": "[origination_uuid={U1}]loopback/respond:603/default/inline", "actions": []},
        {"name": "reject_call_rejected", "vars": A_VARS,
         "dial": "[origination_uuid={U1}]loopback/hangup:CALL_REJECTED/default/inline", "actions": []},
        {"name": "reject_unallocated", "vars": A_VARS,
         "dial": "[origination_uuid={U1}]loopback/hangup:UNALLOCATED_NUMBER/default/inline", "actions": []},
        {"name": "no_answer_leg_timeout", "vars": A_VARS,
         "dial": "[origination_uuid={U1},leg_timeout=2]" + ringing, "actions": [], "listen": True},
        {"name": "no_answer_call_timeout", "vars": A_VARS + ["call_timeout=2"],
         "dial": "[origination_uuid={U1}]" + ringing, "actions": []},
        {"name": "no_answer_originate_timeout", "vars": A_VARS,
         "dial": "{originate_timeout=2}[origination_uuid={U1}]" + ringing, "actions": []},
        {"name": "parallel_one_answers", "vars": A_VARS,
         "dial": "[origination_uuid={U1}]" + ringing + ",[origination_uuid={U2}]loopback/9998/default,"
                 "[origination_uuid={U3}]error/user_busy",
         "actions": [["A", "CHANNEL_BRIDGE", 1.0, "kill A"]]},
        {"name": "failover", "vars": A_VARS,
         "dial": "[origination_uuid={U1}]error/user_busy|[origination_uuid={U2}]loopback/respond:486/default/inline"
                 "|[origination_uuid={U3}]loopback/9998/default",
         "actions": [["A", "CHANNEL_BRIDGE", 1.0, "kill U3"]]},
        {"name": "a_hangs_up_while_ringing", "vars": A_VARS,
         "dial": "[origination_uuid={U1},leg_timeout=20]" + ringing,
         "actions": [["U1", "CHANNEL_PROGRESS", 1.0, "exists U1"], ["U1", "CHANNEL_PROGRESS", 1.5, "kill A"]]},
        {"name": "b_killed_while_ringing", "vars": A_VARS,
         "dial": "[origination_uuid={U1},leg_timeout=20]" + ringing,
         "actions": [["U1", "CHANNEL_PROGRESS", 1.0, "kill U1"]]},
        {"name": "a_hangs_up_during_bridge", "vars": A_VARS,
         "dial": "[origination_uuid={U1}]loopback/9998/default",
         "actions": [["A", "CHANNEL_BRIDGE", 1.0, "kill A"]]},
        {"name": "hangup_after_bridge_default", "vars": [],
         "dial": "[origination_uuid={U1}]loopback/9998/default",
         "actions": [["A", "CHANNEL_BRIDGE", 1.0, "kill U1"]]},
        {"name": "bridge_terminate_key", "vars": A_VARS + ["bridge_terminate_key=*"],
         "dial": "[origination_uuid={U1}]loopback/9998/default",
         "actions": [["A", "CHANNEL_BRIDGE", 1.0, "dtmf A *"]]},
        {"name": "execute_on_answer", "vars": A_VARS,
         "dial": "[origination_uuid={U1},execute_on_answer='sched_hangup +2 ALLOTTED_TIMEOUT']loopback/9998/default",
         "actions": []},
        {"name": "early_media", "vars": A_VARS,
         "dial": "{ignore_early_media=false}[origination_uuid={U1},leg_timeout=3]loopback/m:^:pre_answer^"
                 "gentones:%(30000\\,0\\,800)/default/inline",
         "actions": [["A", "CHANNEL_BRIDGE", 2.0, "kill U1"]], "listen": True},
        {"name": "ringback_tone", "vars": A_VARS + ["ringback=%(2000,4000,440,480)"],
         "dial": "[origination_uuid={U1},leg_timeout=3]" + ringing, "actions": [], "listen": True},
        {"name": "instant_ringback", "vars": A_VARS + ["ringback=%(2000,4000,440,480)", "instant_ringback=true"],
         "dial": "[origination_uuid={U1},leg_timeout=3]loopback/park/default/inline", "actions": [], "listen": True},
        {"name": "early_media_with_ringback", "vars": A_VARS + ["ringback=%(2000,4000,440,480)"],
         "dial": "{ignore_early_media=false}[origination_uuid={U1},leg_timeout=3]loopback/m:^:pre_answer^"
                 "gentones:%(30000\\,0\\,800)/default/inline",
         "actions": [["A", "CHANNEL_BRIDGE", 2.0, "kill U1"]], "listen": True},
        {"name": "early_media_ignored", "vars": A_VARS + ["ringback=%(2000,4000,440,480)"],
         "dial": "{ignore_early_media=true}[origination_uuid={U1},leg_timeout=3]loopback/m:^:pre_answer^"
                 "gentones:%(30000\\,0\\,800)/default/inline", "actions": [], "listen": True},
        {"name": "read_displace_reaches_the_callee", "vars": A_VARS,
         "dial": "[origination_uuid={U1},RECORD_STEREO=true]loopback/9998/default",
         "actions": [["A", "CHANNEL_BRIDGE", 0.3, "record U1"], ["A", "CHANNEL_BRIDGE", 0.6, "displace A"],
                     ["A", "CHANNEL_BRIDGE", 2.6, "kill U1"]], "listen": True},
        {"name": "early_media_teletone_L_minus_1", "vars": A_VARS,
         "dial": "[origination_uuid={U1}]loopback/m:^:pre_answer^gentones:%(500\\,0\\,800);L=-1^park/default/inline",
         "actions": [["A", "CHANNEL_BRIDGE", 2.0, "kill U1"]], "listen": True},
        {"name": "unknown_gateway", "vars": A_VARS,
         "dial": "[origination_uuid={U1}]sofia/gateway/nosuchgw/15557654321", "actions": []},
        {"name": "unknown_user", "vars": A_VARS, "dial": "[origination_uuid={U1}]user/nosuchuser", "actions": []},
        {"name": "unreachable_sip", "vars": A_VARS,
         "dial": "[origination_uuid={U1}]sofia/internal/sip:15557654321@127.0.0.1:5999", "actions": []},
    ]


# -- running one case ----------------------------------------------------------------------------
class Run:
    """One case on the switch behind `esl` (an authenticated RawESL subscribed to `event json ALL`)."""

    def __init__(self, esl, case: dict, caller_dtmf, timeout: float = 25.0):
        self.esl = esl
        self.case = case
        self.caller_dtmf = caller_dtmf
        self.timeout = timeout
        self.a = str(uuidlib.uuid4())
        self.b = {f"U{i}": str(uuidlib.uuid4()) for i in range(1, 5)}
        self.labels = {self.a: "A", **{u: k for k, u in self.b.items()}}
        self.events: list[tuple[float, str, dict]] = []       # (t, label, event)
        self.replies: list = []               # [action, its api reply]
        self.awaiting_reply = None
        self.t0 = time.monotonic()
        self.pending = [list(a) + [None] for a in case["actions"]]     # [leg, event, delay, action, due]

    def label(self, ev: dict) -> str | None:
        uuid = ev.get("Unique-ID")
        if not uuid:
            return None
        if uuid in self.labels:
            return self.labels[uuid]
        other = ev.get("variable_other_loopback_leg_uuid")
        if other in self.labels and ev.get("Channel-Name", "").endswith("-b"):
            self.labels[uuid] = self.labels[other] + "-b"
            return self.labels[uuid]
        return None

    def api(self, line: str) -> str:
        self.esl.send(f"api {line}\n\n")
        return self._until(lambda h, b: h is not None and h.get("Content-Type") == "api/response")

    def _until(self, want, timeout: float | None = None):
        """Read frames (events recorded) until `want(headers, body)`; returns the body text."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            self._run_due()
            try:
                headers, body, _raw = self.esl.frame(0.1)
            except TimeoutError:
                continue
            except OSError as exc:          # socket.timeout
                if "timed out" in str(exc):
                    continue
                raise
            if headers.get("Content-Type") == "text/event-json":
                self._event(json.loads(body))
                if want(None, None):
                    return ""
                continue
            if headers.get("Content-Type") == "api/response" and self.awaiting_reply is not None:
                self.awaiting_reply[1] = body.decode("utf-8").strip()
                self.awaiting_reply = None
                continue
            if want(headers, body):
                return body.decode("utf-8")
        raise TimeoutError(f"{self.case['name']}: timed out")

    def _event(self, ev: dict) -> None:
        label = self.label(ev)
        if label is None:
            return
        t = time.monotonic() - self.t0
        self.events.append((t, label, ev))
        for action in self.pending:
            if action[4] is None and action[0] == label and action[1] == ev.get("Event-Name"):
                action[4] = time.monotonic() + action[2]

    def _run_due(self) -> None:
        now = time.monotonic()
        for action in list(self.pending):
            if action[4] is not None and action[4] <= now:
                self.pending.remove(action)
                self._act(action[3])

    def _act(self, action: str) -> None:
        verb, who, *rest = action.split(" ")
        target = self.a if who == "A" else self.b[who]
        if verb == "kill":
            line = f"uuid_kill {target}"
        elif verb == "exists":
            line = f"uuid_exists {target}"
        elif verb == "record":                  # what the B-leg writes: what the A-leg read
            line = f"uuid_record {target} start {self.b_record}"
        elif verb == "displace":                # the `r` flag: replaces what the leg reads
            line = f"uuid_displace {target} start tone_stream://%(1000,0,1500);loops=-1 0 r"
        else:                                   # "dtmf A <digit>": the caller presses a key
            line = self.caller_dtmf(self, rest[0])
        self.esl.send(f"api {line}\n\n")
        self.replies.append([action, None])
        self.awaiting_reply = self.replies[-1]

    def peer(self) -> str:
        """The A-leg's loopback partner (the caller's side), as its events name it."""
        for _t, label, ev in self.events:
            if label == "A" and ev.get("variable_other_loopback_leg_uuid"):
                return ev["variable_other_loopback_leg_uuid"]
        return self.a

    def sendmsg(self, app: str, arg: str, lock: bool = False) -> None:
        lines = [f"sendmsg {self.a}", "call-command: execute", f"execute-app-name: {app}",
                 f"execute-app-arg: {arg}"]
        if lock:
            lines.append("event-lock: true")
        self.esl.send("\n".join(lines) + "\n\n")
        self._until(lambda h, b: h is not None and h.get("Content-Type") == "command/reply")

    def done(self) -> bool:
        names = [(label, ev.get("Event-Name"), ev.get("Application")) for _t, label, ev in self.events]
        if ("A", "CHANNEL_HANGUP_COMPLETE", None) not in names:
            return False
        gone = {label for label, name, _a in names if name == "CHANNEL_HANGUP_COMPLETE"}
        started = {label for label, name, _a in names if name == "CHANNEL_CREATE"}
        return started <= gone

    def run(self, record_path: str | None) -> dict:
        reply = self.api(f"originate {{origination_uuid={self.a}}}loopback/9999/default &park()")
        assert reply.startswith("+OK"), reply
        if record_path:
            self.sendmsg("set", "RECORD_STEREO=true")
            self.sendmsg("record_session", record_path)
        for assignment in self.case["vars"]:
            self.sendmsg("set", assignment)
        dial = self.case["dial"]
        for key, uuid in self.b.items():
            dial = dial.replace("{%s}" % key, uuid)
        self.bridge_started = time.monotonic() - self.t0
        self.sendmsg("bridge", dial, lock=True)

        def bridge_done(_h, _b):
            return any(label == "A" and ev.get("Event-Name") == "CHANNEL_EXECUTE_COMPLETE"
                       and ev.get("Application") == "bridge" for _t, label, ev in self.events)
        try:
            self._until(lambda h, b: bridge_done(h, b) or False, timeout=self.timeout)
        except TimeoutError:
            pass
        self.esl.send(f"bgapi uuid_kill {self.a}\n\n")
        try:
            self._until(lambda h, b: self.done(), timeout=10)
        except TimeoutError:
            pass
        while not self.done():
            try:
                self._until(lambda h, b: False, timeout=0.3)
            except TimeoutError:
                break
        return self.result()

    def result(self) -> dict:
        uuids = dict(self.labels)
        legs: dict[str, list] = {}
        a_vars, b_vars, times = {}, {}, {}
        for t, label, ev in self.events:
            name = ev.get("Event-Name")
            if name == "CHANNEL_EXECUTE_COMPLETE" and label == "A" and ev.get("Application") == "bridge":
                a_vars = {k: _clean(ev.get("variable_" + k), uuids) for k in A_VARIABLES
                          if ("variable_" + k) in ev}
                times["bridge_s"] = round(t - self.bridge_started, 1)
            if name == "CHANNEL_HANGUP_COMPLETE" and label != "A" and not label.endswith("-b"):
                b_vars[label] = {k: _clean(ev.get("variable_" + k), uuids) for k in B_VARIABLES
                                 if ("variable_" + k) in ev}
            if name == "CHANNEL_HANGUP" and label != "A":
                times[f"{label}_hangup_s"] = round(t - self.bridge_started, 1)
            if name not in WATCHED:
                continue
            if name in ("CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE") and \
                    ev.get("Application") not in ("bridge",):
                continue
            kept = {"event": name}
            kept.update({k: _clean(ev[k], uuids) for k in HEADERS if k in ev})
            legs.setdefault(label, []).append(kept)
        return {"name": self.case["name"], "vars": self.case["vars"], "dial": self.case["dial"],
                "actions": self.case["actions"], "legs": legs, "a_variables": a_vars,
                "b_variables": b_vars, "times": times, "replies": self.replies}


def _clean(value, uuids: dict):
    if isinstance(value, list):
        return [_clean(v, uuids) for v in value]
    if not isinstance(value, str):
        return value
    for uuid, label in uuids.items():
        value = value.replace(uuid, "{%s}" % label)
    return value


def heard_summary(path: str, start_s: float, seconds: float = 3.0) -> list:
    """The dominant frequency (Hz, 0 for silence) of each 200 ms of what the caller heard (the
    recording's right channel), from `start_s` on."""
    import soundfile
    try:
        data, rate = soundfile.read(path, dtype="int16", always_2d=True)
    except Exception:
        return []
    right = data[:, 1].astype(np.float64) if data.shape[1] > 1 else data[:, 0].astype(np.float64)
    out = []
    step = rate // 5
    first = int(start_s * rate)
    for i in range(first, min(len(right), first + int(seconds * rate)) - step + 1, step):
        chunk = right[i:i + step]
        if np.sqrt(np.mean(chunk ** 2)) < 200:
            out.append(0)
            continue
        spectrum = np.abs(np.fft.rfft(chunk * np.hanning(len(chunk))))
        out.append(int(round(np.argmax(spectrum) * rate / len(chunk) / 10.0) * 10))
    return out


def run_case(esl, case: dict, caller_dtmf, record_dir: Path = TONE_DIR) -> dict:
    """One case on the switch behind `esl` (authenticated, subscribed to `event json ALL`); the
    recording of what the caller heard goes to `record_dir` (FreeSWITCH must be able to write it)."""
    record = None
    if case.get("listen"):
        record_dir.mkdir(exist_ok=True)
        os.chmod(record_dir, 0o755)
        record = str(record_dir / f"heard-{case['name']}-{uuidlib.uuid4().hex[:6]}.wav")
    r = Run(esl, case, caller_dtmf)
    if record:
        r.b_record = record[:-4] + "-b.wav"
    result = r.run(record)
    if record:
        result["heard_hz"] = heard_summary(record, r.bridge_started)
        if any(a[3].startswith("record") for a in case["actions"]):
            result["b_wrote_hz"] = heard_summary(r.b_record, 0.0, 2.4)
        for path in (record, r.b_record):
            if os.path.exists(path):
                os.unlink(path)
    return result


def subscribed(address, password):
    esl = esl_connect(address, password)
    esl.command("event json ALL")
    return esl


@contextlib.contextmanager
def on_simulator():
    """A fresh switch_sim and an inbound ESL connection to it subscribed as the captures were: the
    replay tests run the captured cases on it (tests/test_sim_bridge_truth.py and others)."""
    from switch_sim import Simulator
    sim = Simulator(socket_target=("127.0.0.1", 9)).start()
    conn = subscribed(sim.esl_address, "ClueCon")
    try:
        yield conn
    finally:
        conn.close()
        sim.stop()


def run(address, password, caller_dtmf, pace: float = 0.3, only=None) -> list[dict]:
    esl = subscribed(address, password)
    results = []
    try:
        for case in cases():
            if only and case["name"] not in only:
                continue
            time.sleep(pace)   # pacing: the cases spaced out on the real switch (0 on the simulator)
            results.append(run_case(esl, case, caller_dtmf))
    finally:
        esl.close()
    return results


def sim_dtmf(run: "Run", digit: str) -> str:
    """A digit from the caller on the simulator: queued on the A-leg as the caller's."""
    return f"sim_dtmf {run.a} {digit}"


def _real_dtmf(run: Run, digit: str) -> str:
    """A digit from the caller: the A-leg's loopback partner sends it, so the A-leg reads it."""
    return f"uuid_send_dtmf {run.peer()} {digit}"


def capture(address, password: str) -> list[dict]:
    return run(address, password, _real_dtmf)


def replay(sim) -> list[dict]:
    return run(sim.esl_address, "ClueCon", sim_dtmf, pace=0.0)


UNSTABLE = ("last_bridge_role",)       # set or not depending on which thread FreeSWITCH ran first
SETUP = ("CHANNEL_OUTGOING", "CHANNEL_CREATE", "CHANNEL_ORIGINATE")


def event_names(events: list, leg: str) -> list:
    """A leg's event names with the hangup causes; the A-leg's from its bridge on (what comes
    before is the parked caller's originate, not the bridge)."""
    names = [e["event"] + (f"({e['Hangup-Cause']})" if e["event"] == "CHANNEL_HANGUP" else "")
             for e in events]
    if leg == "A":
        starts = [i for i, e in enumerate(events) if e["event"] == "CHANNEL_EXECUTE"]
        names = names[starts[0]:] if starts else names
    # a B-leg's CHANNEL_CREATE / CHANNEL_ORIGINATE come from the originating thread, its progress
    # from its own: FreeSWITCH interleaves them either way (both orders were captured)
    setup = [n for n in names if n in SETUP]
    return setup + [n for n in names if n not in SETUP]


def compare(expected: list, got: list, label: str = "simulator") -> list:
    from truth_capture import compare_cases

    def differences(want, have):
        problems = []
        for leg, events in want["legs"].items():
            if leg == "A-b":                 # the caller: on the simulator the originate's far end
                continue
            a, b = event_names(events, leg), event_names(have["legs"].get(leg, []), leg)
            if a != b:
                problems.append(f"{want['name']} {leg}: FreeSWITCH {a}, {label} {b}")
        for key in ("a_variables",):
            for name in sorted(set(want[key]) | set(have[key])):
                if name in UNSTABLE:
                    continue
                if want[key].get(name) != have[key].get(name):
                    problems.append(f"{want['name']} {key} {name}: FreeSWITCH {want[key].get(name)!r}, "
                                    f"{label} {have[key].get(name)!r}")
        return problems
    return compare_cases(expected, got, lambda case: case["name"], differences)


def main(argv=None) -> int:
    return truth_capture.main(argv, doc=__doc__, fixture="bridge.json", capture=capture,
                              replay=replay, compare=compare, doc_paragraphs=1)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "try":
        address, password = truth_capture.esl_setting("127.0.0.1:8021:ClueCon")
        for res in run(address, password, _real_dtmf, only=sys.argv[2:]):
            print("==", res["name"], res["times"], res["replies"], res.get("heard_hz"), res.get("b_wrote_hz"))
            for leg, evs in res["legs"].items():
                print("  ", leg, [e["event"] + ("(%s)" % e["Hangup-Cause"] if "Hangup-Cause" in e and e["event"].endswith("COMPLETE") else "") for e in evs])
            print("   A vars", res["a_variables"])
            print("   B vars", res["b_variables"])
        sys.exit(0)
    sys.exit(main())
