"""What mod_conference's `dist-dtmf` member flag (Vobiz relayDTMF) does on FreeSWITCH 1.10.12,
captured for the simulator: who gets the digits a member presses, as what.

Members are made as tests/conference_capture.py makes them (loopback calls whose A leg is the
member, `conference:<room>@default+flags{...},park` inline, `conference_controls=none`; the B leg is
9999, parked: the member's phone). A member presses digits with `uuid_send_dtmf <its B leg>`
(mod_loopback queues them on the A leg, which the conference reads). Three members: member 1 has
dist-dtmf and presses `12#`, then member 2 (no flag) presses `45`. Kept: every DTMF event of the six
legs (digit, source, leg), and the levels of digit 1's two tones (697 and 1209 Hz, Goertzel dBFS)
in what member 2 was given to hear (RECORD_WRITE_ONLY on its A leg) while the digits went round.

    python tests/conference_dtmf_capture.py capture --esl 127.0.0.1:8021:ClueCon \
        --out tests/fixtures/fs-captures/conference-dtmf.json

No port 8084 and no callfork number is used (no lock needed). tests/test_sim_conference_truth.py
runs the same scenario on the simulator (`run_scenario` takes any switch's event socket) and
compares.
"""
from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey
    monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402
import uuid as uuidlib  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from conference_capture import Capture, goertzel_dbfs  # noqa: E402
from truth_capture import capture_main  # noqa: E402

DIGIT_1_TONES = (697, 1209)


WINDOW_S = 2.0      # what member 2 hears from the first press on, checked for in-band digits

def _dtmf_events(cap: Capture, legs: dict, t_from: float) -> list:
    """(leg name, digit, source) of each DTMF event on the legs, in order."""
    names = {uuid: name for name, uuid in legs.items()}
    return [{"t": round(e["t"] - t_from, 3), "leg": names[e["headers"].get("Unique-ID")],
             "digit": e["headers"].get("DTMF-Digit"), "source": e["headers"].get("DTMF-Source")}
            for e in cap.events
            if e["t"] >= t_from and e["headers"].get("Event-Name") == "DTMF"
            and e["headers"].get("Unique-ID") in names]


def run_scenario(cap: Capture) -> dict:
    """The scenario on the switch `cap` is connected to (a real one, or the simulator)."""
    cap.ev.sock.sendall(b"event plain DTMF\n\n")      # subscriptions add up; the reader skips the reply
    room = "cfcap-dtmf-" + uuidlib.uuid4().hex[:6]
    members = []
    for i, flags in enumerate(("dist-dtmf", "", "")):
        m = cap.member(room, flags=flags, variables={"hangup_after_conference": "false"}, record=(i == 1))
        cap.wait_events(lambda h, u=m["uuid"]: h.get("Action") == "add-member" and h.get("Unique-ID") == u)
        members.append(m)
    legs = {}
    for i, m in enumerate(members):
        legs[f"member{i + 1}"] = m["uuid"]
        legs[f"member{i + 1}_phone"] = m["b_leg"]
    t_from = cap.now()
    sent = [cap.api(f"uuid_send_dtmf {members[0]['b_leg']} 12#").strip()]
    # the relayed digits reach the other members' phones (DTMF events there), then the rest of a
    # measurement window: what member 2 heard meanwhile is checked for in-band tones
    for m in members[1:]:
        cap.wait_events(lambda h, u=m["b_leg"]: h.get("Event-Name") == "DTMF" and h.get("Unique-ID") == u
                        and h.get("DTMF-Digit") == "#", 5.0, t_from)
    gevent.sleep(max(0.0, t_from + WINDOW_S - cap.now()))
    t_mid = cap.now()
    sent.append(cap.api(f"uuid_send_dtmf {members[1]['b_leg']} 45").strip())
    # member 2 has no dist-dtmf: its own leg reads its digits, and nothing may reach the others
    cap.wait_events(lambda h, u=members[1]["uuid"]: h.get("Event-Name") == "DTMF" and h.get("Unique-ID") == u
                    and h.get("DTMF-Digit") == "5", 5.0, t_mid)
    gevent.sleep(1.0)   # a window in which nothing may arrive: there is nothing to wait for
    t_end = cap.now()
    heard = members[1]
    cap.api(f"uuid_record {heard['uuid']} stop {heard['heard']}")
    cap.hung_up(*members)
    import soundfile
    data, rate = soundfile.read(heard["heard"], dtype="int16")
    a = int(max(0.0, t_from - heard["rec_t"]) * rate)
    b = int(max(0.0, t_mid - heard["rec_t"]) * rate)
    levels = {str(f): goertzel_dbfs(data[a:b], rate, f) for f in DIGIT_1_TONES}
    os.unlink(heard["heard"])
    return {"room": room, "flags": {"member1": "dist-dtmf", "member2": "", "member3": ""},
            "pressed": [{"by": "member1", "digits": "12#", "t": 0.0},
                        {"by": "member2", "digits": "45", "t": round(t_mid - t_from, 3)}],
            "send_replies": [s.replace(members[0]["b_leg"], "{M1_PHONE}").replace(members[1]["b_leg"], "{M2_PHONE}")
                             for s in sent],
            "dtmf": _dtmf_events(cap, legs, t_from), "member2_heard_digit1_dbfs": levels,
            "seconds": round(t_end - t_from, 3)}


def capture(address, password) -> dict:
    cap = Capture(address, password)
    try:
        version = cap.api("version").strip()
        return {"freeswitch": version, "doc": __doc__.split("\n\n")[0].replace("\n", " "),
                "scenarios": {"dist_dtmf": run_scenario(cap)}}
    finally:
        cap.close()


def main(argv):
    return capture_main(argv, doc=__doc__, capture=capture)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
