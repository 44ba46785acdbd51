"""Who FreeSWITCH 1.10.12 says the caller is on a channel placed with `originate ... &socket(...)`
(what a REST call of callfork is), captured on a real FreeSWITCH and replayed on the simulator.

switch_ivr_originate gives the new channel's caller profile the caller id asked for
(origination_caller_id_name/number, or the command's cid_name/cid_num arguments, else "" and
"0000000000") and a callee id of its own: the name "Outbound Call" and the number
switch_sanitize_number(<dial string after "tech/">), i.e. what follows the last '/' or ':' once
'@...' is cut ("9999/default" -> "default", "gateway/carrier/15557654321" -> "15557654321").
Then, when the channel is given something to run (mod_commands' `&app`:
switch_channel_set_caller_extension; an extension: the dialplan does the same), switch_channel_sort_cid
flips caller and callee on an outbound channel (switch_channel_flip_cid): Caller-Caller-ID-Name /
-Number become "Outbound Call" / "default", Caller-Callee-ID-* the caller id that was asked for,
pre_transfer_caller_id_name/number keep it too, channel_cid_flipped=yes, and a CALL_UPDATE fires.
Orig-Caller-ID-* and ANI keep the asked-for caller id (set when the profile was created), and so do
the origination_caller_id_* variables (the cid_name/cid_num arguments are added as those variables).
mod_loopback then reads "9999/default" as destination 9999, context default.

Each case is one `originate <arg> &socket('127.0.0.1:<port> async full')<tail>`, `{U}` standing for
the channel's origination_uuid. The socket is answered with `connect`, `linger`, `myevents`; the
channel is then killed (uuid_kill). Kept per case: the caller-id headers of the connect reply (the
CHANNEL_DATA callfork reads From/To/CallerName/Direction from) and of the CHANNEL_HANGUP_COMPLETE
event that follows, and the caller-id variables (`HEADERS`, `VARIABLES`).

    python tests/originate_cid_truth.py capture --esl 127.0.0.1:8021:ClueCon --out tests/fixtures/fs-captures/originate-callerid.json
    python tests/originate_cid_truth.py sim          # the same cases on the simulator, differences printed

The capture (a few seconds) needs a FreeSWITCH with mod_commands, mod_event_socket and mod_loopback
whose default context parks 9999 and echoes 9196 (the freeswitch-test configuration).
tests/test_sim_originate_cid_truth.py replays the fixture.
"""
from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey
    monkey.patch_all()

import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid as uuidlib  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import unquote  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

import truth_capture  # noqa: E402
from callfork.originate import variable_block  # noqa: E402
from sim_support import RawESL  # noqa: E402
from truth_capture import api_response, compare_cases, esl_connect  # noqa: E402

PLACEHOLDER = "00000000-0000-4000-8000-00000000000c"     # stands for {U} while callfork writes the block
REQUEST_UUID = "00000000-0000-4000-8000-0000000000aa"

# the caller-profile fields kept, under both prefixes the connect reply carries them with
PROFILE_FIELDS = ("Direction", "Logical-Direction", "Caller-ID-Name", "Caller-ID-Number",
                  "Orig-Caller-ID-Name", "Orig-Caller-ID-Number", "Callee-ID-Name", "Callee-ID-Number",
                  "ANI", "Destination-Number", "Source", "Context", "Channel-Name")
HEADERS = ("Call-Direction", "Channel-Name", "Answer-State") + tuple(
    f"{prefix}-{field}" for prefix in ("Channel", "Caller") for field in PROFILE_FIELDS)
VARIABLES = ("direction", "channel_name", "origination_caller_id_name", "origination_caller_id_number",
             "pre_transfer_caller_id_name", "pre_transfer_caller_id_number", "channel_cid_flipped")


def _callfork_block(number: str, name: str) -> str:
    """The block callfork.originate writes for a REST call (the same variables, in the same order)."""
    block = variable_block({"origination_uuid": PLACEHOLDER, "origination_caller_id_number": number,
                            "origination_caller_id_name": name, "originate_timeout": 60,
                            "callfork_request_uuid": REQUEST_UUID, "send_silence_when_idle": -1})
    return block.replace(PLACEHOLDER, "{U}")


def cases() -> list[dict]:
    return [
        # a REST call: callfork's block and its default dial string
        {"arg": _callfork_block("+14155550100", "Alice") + "loopback/9999/default", "tail": ""},
        {"arg": _callfork_block("15551230001", "O'Brien, Pat") + "loopback/9999/default", "tail": ""},
        # a dial string without a context: the callee number is the whole rest
        {"arg": _callfork_block("15551230001", "Bob") + "loopback/9196", "tail": ""},
        # no caller id at all
        {"arg": "{origination_uuid={U}}loopback/9999/default", "tail": ""},
        # a number without a name
        {"arg": "{origination_uuid={U},origination_caller_id_number=15551230001}loopback/9999/default",
         "tail": ""},
        # the command's own cid_name / cid_num arguments
        {"arg": "{origination_uuid={U}}loopback/9999/default", "tail": " undef undef Carol 15550001"},
    ]


def _headers(raw: bytes) -> dict:
    """The first occurrence of each header of a text/event-plain block or connect reply, decoded."""
    out = {}
    for line in raw.decode("utf-8").split("\n"):
        if ": " in line:
            key, value = line.split(": ", 1)
            out.setdefault(key, unquote(value))
    return out


def _kept(headers: dict, uuid: str) -> dict:
    def clean(value: str) -> str:
        return value.replace(uuid, "{U}")
    out = {k: clean(headers[k]) for k in HEADERS if k in headers}
    out.update({f"variable_{k}": clean(headers[f"variable_{k}"]) for k in VARIABLES
                if f"variable_{k}" in headers})
    return out


def run_case(esl: RawESL, case: dict, timeout: float = 10) -> dict:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    uuid = str(uuidlib.uuid4())
    line = (f"api originate {case['arg'].replace('{U}', uuid)} "
            f"&socket('127.0.0.1:{port} async full'){case['tail']}")
    esl.send(line + "\n\n")
    listener.settimeout(timeout)
    try:
        conn, _addr = listener.accept()
    finally:
        listener.close()
    out = RawESL(conn)
    try:
        _h, _b, connect = out.command("connect", timeout)
        out.command("linger", timeout)
        out.command("myevents", timeout)
        reply = api_response(esl, timeout)          # the originate's reply
        esl.command(f"api uuid_kill {uuid}", timeout)
        deadline = time.monotonic() + timeout
        hangup = None
        while hangup is None and time.monotonic() < deadline:
            headers, body, _raw = out.next_frame(timeout)
            if headers.get("Content-Type") == "text/event-plain":
                event = _headers(body)
                if event.get("Event-Name") == "CHANNEL_HANGUP_COMPLETE":
                    hangup = event
    finally:
        out.sock.close()
    return dict(case, reply=reply.replace(uuid, "{U}"), connect=_kept(_headers(connect), uuid),
                hangup_complete=_kept(hangup or {}, uuid))


def run(address, password="ClueCon", pace: float = 0.0) -> list[dict]:
    """Every case on the switch at `address`, `pace` seconds apart (sessions-per-second)."""
    esl = esl_connect(address, password)
    try:
        results = []
        for case in cases():
            time.sleep(pace)   # pacing: FreeSWITCH refuses more than sessions-per-second originates
            results.append(run_case(esl, case))
        return results
    finally:
        esl.close()


def capture(address, password: str) -> list[dict]:
    """Every case on the (real) switch at `address`, paced."""
    return run(address, password, pace=0.2)


def replay(sim) -> list[dict]:
    """Every case on a running simulator."""
    return run(sim.esl_address)


def compare(expected: list, got: list, label: str = "simulator") -> list:
    def differences(want, have):
        problems = []
        for key in ("reply", "connect", "hangup_complete"):
            a, b = want[key], have[key]
            if isinstance(a, dict):
                for name in sorted(set(a) | set(b)):
                    if a.get(name) != b.get(name):
                        problems.append(f"{want['arg']}{want['tail']}: {key} {name}: FreeSWITCH "
                                        f"{a.get(name)!r}, {label} {b.get(name)!r}")
            elif a != b:
                problems.append(f"{want['arg']}{want['tail']}: {key} {a!r}, {label} {b!r}")
        return problems
    return compare_cases(expected, got, lambda case: (case["arg"], case["tail"]), differences)


def main(argv=None) -> int:
    return truth_capture.main(argv, doc=__doc__, fixture="originate-callerid.json", capture=capture,
                              replay=replay, compare=compare, doc_paragraphs=4)


if __name__ == "__main__":
    sys.exit(main())
