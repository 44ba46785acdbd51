"""What mod_conference (FreeSWITCH 1.10.12) does, captured on a real FreeSWITCH for the simulator:
the `conference::maintenance` events, the `conference` API's replies, what each member hears
(mixing, mute, deaf), and what happens to a member's channel when it leaves (kick, hup, endconf,
max members, mintwo, wait-mod).

Members are mod_loopback calls: `originate {origination_uuid=U,<vars>}loopback/9999/default
'conference:<room>@default+flags{...},park' inline` (the A leg joins the room, then parks when the
conference app returns; the B leg is 9999, answered and parked). Each member's B leg plays its own
tone (`uuid_broadcast <B> tone_stream://...`: what the member says) and `uuid_record` records the A
leg's written audio with RECORD_WRITE_ONLY (what the member hears). The levels of the three tones
in what each member heard are measured over windows (Goertzel, dBFS) and stored, not the audio.
Events come from a raw inbound ESL connection (`event plain CHANNEL_EXECUTE_COMPLETE
CHANNEL_HANGUP_COMPLETE CUSTOM conference::maintenance`), headers URL-decoded; `uuid_exists` says whether
a member's channel outlived its conference app.

    python tests/conference_capture.py capture --esl 127.0.0.1:8021:ClueCon --out tests/fixtures/fs-captures/conference-mod.json

No port 8084 and no callfork number is used (no lock needed). tests/test_sim_conference_truth.py
replays the fixture on the simulator.
"""
from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey
    monkey.patch_all()

import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid as uuidlib  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import unquote  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from truth_capture import api_response, capture_main, esl_connect  # noqa: E402
from waiting import wait_until  # noqa: E402

TONES = (400, 700, 1100)          # Hz: what members 1, 2, 3 say
WINDOW_S = 1.5                    # how long each mixing state is held
MARGIN_S = 0.4                    # left out at both ends of a window (the recording lags the commands)
EVENTS = "CHANNEL_EXECUTE_COMPLETE CHANNEL_HANGUP_COMPLETE CUSTOM conference::maintenance"  # subclasses follow CUSTOM
KEEP_EXECUTE = ("conference",)    # CHANNEL_EXECUTE_COMPLETE kept only for these apps


def goertzel_dbfs(samples, rate, freq) -> float:
    """The level of one frequency in int16 samples, dBFS of a full-scale sine."""
    import numpy as np
    if len(samples) == 0:
        return -120.0
    x = np.asarray(samples, dtype=np.float64) / 32768.0
    n = len(x)
    t = np.arange(n)
    re_ = float(np.dot(x, np.cos(2 * np.pi * freq * t / rate)))
    im_ = float(np.dot(x, np.sin(2 * np.pi * freq * t / rate)))
    amp = 2 * math.hypot(re_, im_) / n
    return round(20 * math.log10(max(amp, 1e-6)), 1)


class Capture:
    def __init__(self, address, password):
        self.address, self.password = address, password
        self.cmd = esl_connect(address, password)
        self.ev = esl_connect(address, password)
        self.ev.command("event plain " + EVENTS)
        self.t0 = time.monotonic()
        self.events = []
        self.reader = gevent.spawn(self._read)
        self.dir = Path("/tmp/callfork-conference-capture")
        self.dir.mkdir(exist_ok=True)

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 3)

    def _read(self):
        while True:
            try:
                headers, body, _raw = self.ev.frame(timeout=3600)
            except Exception:
                return
            if headers.get("Content-Type") != "text/event-plain":
                continue
            inner = {}
            for line in body.decode("utf-8").split("\n"):
                if ": " in line:
                    key, value = line.split(": ", 1)
                    inner.setdefault(key, unquote(value))
            name = inner.get("Event-Name")
            if name == "CHANNEL_EXECUTE_COMPLETE" and inner.get("Application") not in KEEP_EXECUTE:
                continue
            self.events.append({"t": self.now(), "headers": inner})

    def api(self, line: str) -> str:
        self.cmd.sock.sendall(("api " + line + "\n\n").encode("utf-8"))
        return api_response(self.cmd)

    def close(self):
        self.reader.kill()
        self.cmd.close()
        self.ev.close()

    def member(self, room: str, flags: str = "", variables: dict | None = None, record: bool = True) -> dict:
        """A loopback member in `room`: its A leg (the member) and B leg (its voice)."""
        uuid = str(uuidlib.uuid4())
        vars_ = {"origination_uuid": uuid, "conference_controls": "none"}
        vars_.update(variables or {})
        block = "{" + ",".join(f"{k}={v}" for k, v in vars_.items()) + "}"
        target = f"conference:{room}@default" + (f"+flags{{{flags}}}" if flags else "")
        reply = self.api(f"originate {block}loopback/9999/default '{target},park' inline")
        other = self.api(f"uuid_getvar {uuid} other_loopback_leg_uuid").strip()
        heard = rec_t = None
        if record:
            heard = str(self.dir / f"heard-{uuid}.wav")
            self.api(f"uuid_setvar {uuid} RECORD_WRITE_ONLY true")
            rec_t = self.now()
            self.api(f"uuid_record {uuid} start {heard}")
        return {"uuid": uuid, "b_leg": other, "originate": reply.strip(), "heard": heard, "t": self.now(),
                "rec_t": rec_t if record else None}

    def say(self, member: dict, freq: int):
        """The member's B leg plays an endless tone: what the member says into the room."""
        return self.api(f"uuid_broadcast {member['b_leg']} tone_stream://%(100000,0,{freq});loops=-1 aleg").strip()

    def wait_events(self, predicate, timeout=5.0, since=0.0):
        """Until an event (from capture second `since` on) matches `predicate`; False on timeout (a
        capture records what the switch did, so a wait that ends empty-handed is not an error here)."""
        try:
            return wait_until(lambda: any(predicate(e["headers"]) for e in self.events if e["t"] >= since),
                              timeout, "the event", interval=0.05)
        except AssertionError:
            return False

    def wait_action(self, action, uuid=None, room=None, since=0.0, timeout=5.0):
        """Until a conference::maintenance event `action` of this member (or room) has come."""
        return self.wait_events(lambda h: h.get("Action") == action
                                and (uuid is None or h.get("Unique-ID") == uuid)
                                and (room is None or h.get("Conference-Name") == room), timeout, since)

    def hung_up(self, *members, timeout=5.0):
        """Hang the members up and wait for their CHANNEL_HANGUP_COMPLETE."""
        since = self.now()
        self.hangup(*members)
        for m in members:
            self.wait_events(lambda h, u=m["uuid"]: h.get("Event-Name") == "CHANNEL_HANGUP_COMPLETE"
                             and h.get("Unique-ID") == u, timeout, since)

    def exists(self, member) -> str:
        return self.api(f"uuid_exists {member['uuid']}").strip()

    def hangup(self, *members):
        for m in members:
            self.api(f"uuid_kill {m['uuid']}")

    def levels(self, member, windows):
        """Per window (name, start, end in capture seconds): the level of each tone in what the
        member heard. The recording starts at member['t']."""
        import soundfile
        data, rate = soundfile.read(member["heard"], dtype="int16")
        out = {}
        for name, start, end in windows:
            a = int(max(0.0, start + MARGIN_S - member["rec_t"]) * rate)
            b = int(max(0.0, end - MARGIN_S - member["rec_t"]) * rate)
            chunk = data[a:b]
            out[name] = {str(f): goertzel_dbfs(chunk, rate, f) for f in TONES}
        return out


def conference_events(cap: Capture, uuids, t_from=0.0):
    """The maintenance and execute-complete events of these channels (or of no channel) from t_from."""
    rows = []
    for e in cap.events:
        if e["t"] < t_from:
            continue
        h = e["headers"]
        if h.get("Unique-ID") in uuids or (h.get("Event-Subclass") == "conference::maintenance"
                                           and not h.get("Unique-ID")):
            rows.append(e)
    return rows


def scenario_three(cap: Capture) -> dict:
    room = "cfcap-three-" + uuidlib.uuid4().hex[:6]
    t_start = cap.now()
    members = []
    for i in range(3):
        m = cap.member(room, flags="moderator" if i == 0 else "")
        members.append(m)
        cap.wait_events(lambda h, u=m["uuid"]: h.get("Action") == "add-member" and h.get("Unique-ID") == u)
    for m, freq in zip(members, TONES):
        m["broadcast"] = cap.say(m, freq)
    ids = {}
    for e in cap.events:
        h = e["headers"]
        if h.get("Action") == "add-member":
            ids[h.get("Unique-ID")] = h.get("Member-ID")
    mid = [ids.get(m["uuid"]) for m in members]
    replies = []
    windows = []

    def api(line):
        replies.append({"t": cap.now(), "cmd": line.replace(room, "{ROOM}"),
                        "reply": cap.api(line).replace(room, "{ROOM}")})

    def hold(name):
        start = cap.now()
        gevent.sleep(WINDOW_S)      # a measurement window: this much of the room is recorded
        windows.append((name, start, cap.now()))

    hold("all")
    api(f"conference {room} mute {mid[1]}")
    hold("m2_muted")
    api(f"conference {room} unmute {mid[1]}")
    api(f"conference {room} deaf {mid[0]}")
    hold("m1_deaf")
    api(f"conference {room} undeaf {mid[0]}")
    api(f"conference {room} list")
    api(f"conference {room} list count")
    api("conference list")
    api(f"conference {room} json_list")
    since = cap.now()
    api(f"conference {room} play tone_stream://%(300,0,1500)")
    cap.wait_action("play-file-done", room=room, since=since)
    since = cap.now()
    api(f"conference {room} play tone_stream://%(300,0,1500) {mid[0]}")
    cap.wait_action("play-file-member-done", room=room, since=since)
    api(f"conference {room} say hello")
    rec = str(cap.dir / f"conf-{room}.wav")
    since = cap.now()
    api(f"conference {room} recording start {rec}")
    cap.wait_action("start-recording", room=room, since=since)
    api(f"conference {room} recording stop {rec}")
    api(f"conference {room} mute 99")
    api(f"conference {room} kick 99")
    api(f"conference {room} hup 99")
    api("conference cfcap-nosuch-room list")
    api("conference cfcap-nosuch-room kick 1")
    api(f"conference {room} mute all")
    api(f"conference {room} unmute all")
    api(f"conference {room} deaf all")
    api(f"conference {room} undeaf all")
    api(f"conference {room} kick {mid[2]}")
    cap.wait_action("del-member", uuid=members[2]["uuid"])
    after_kick = cap.exists(members[2])
    api(f"conference {room} hup {mid[1]}")
    cap.wait_action("del-member", uuid=members[1]["uuid"])
    after_hup = cap.exists(members[1])
    hold("after_kick_and_hup")
    api(f"conference {room} kick all")
    cap.wait_action("del-member", uuid=members[0]["uuid"])
    after_kick_all = cap.exists(members[0])
    for m in members:
        cap.api(f"uuid_record {m['uuid']} stop {m['heard']}")
    cap.hung_up(*members)
    levels = {f"member{i + 1}": cap.levels(m, windows) for i, m in enumerate(members)}
    for m in members:
        os.unlink(m["heard"])
    try:
        rec_size = os.path.getsize(rec)
        os.unlink(rec)
    except OSError:
        rec_size = None
    uuids = {m["uuid"] for m in members}
    return {
        "room": room, "tones": {"member1": TONES[0], "member2": TONES[1], "member3": TONES[2]},
        "member_ids": mid, "windows": [w[0] for w in windows], "levels": levels,
        "replies": replies, "recording_bytes": rec_size,
        "channel_after": {"kicked_member3": after_kick, "hup_member2": after_hup, "kick_all_member1": after_kick_all},
        "members": [{k: m[k] for k in ("uuid", "b_leg", "originate", "broadcast")} for m in members],
        "events": conference_events(cap, uuids, t_start),
    }


def scenario_endconf(cap: Capture) -> dict:
    room = "cfcap-endconf-" + uuidlib.uuid4().hex[:6]
    t_start = cap.now()
    e1 = cap.member(room, flags="endconf", record=False)
    cap.wait_events(lambda h: h.get("Action") == "add-member" and h.get("Unique-ID") == e1["uuid"])
    e2 = cap.member(room, variables={"hangup_after_conference": "false"}, record=False)
    e3 = cap.member(room, record=False)
    cap.wait_events(lambda h: h.get("Action") == "add-member" and h.get("Unique-ID") == e3["uuid"])
    cap.hangup(e1)
    cap.wait_events(lambda h: h.get("Action") == "conference-destroy" and h.get("Conference-Name") == room)
    # the member without hangup_after_conference=false is hung up by the room's end
    cap.wait_events(lambda h: h.get("Event-Name") == "CHANNEL_HANGUP_COMPLETE" and h.get("Unique-ID") == e3["uuid"])
    after = {"e2_hangup_after_conference_false": cap.exists(e2), "e3_default": cap.exists(e3)}
    cap.hung_up(e2, e3)
    return {"room": room, "channel_after": after,
            "events": conference_events(cap, {e1["uuid"], e2["uuid"], e3["uuid"]}, t_start)}


def scenario_max_members(cap: Capture) -> dict:
    room = "cfcap-max-" + uuidlib.uuid4().hex[:6]
    t_start = cap.now()
    vars_ = {"conference_max_members": "2", "hangup_after_conference": "false"}
    a = cap.member(room, variables=vars_, record=False)
    b = cap.member(room, variables=vars_, record=False)
    cap.wait_events(lambda h: h.get("Action") == "add-member" and h.get("Unique-ID") == b["uuid"])
    c = cap.member(room, variables=vars_, record=False)
    cap.wait_events(lambda h: h.get("Event-Name") == "CHANNEL_EXECUTE_COMPLETE" and h.get("Unique-ID") == c["uuid"])
    listing = cap.api(f"conference {room} list count").strip()
    after = cap.exists(c)
    cap.hung_up(a, b, c)
    return {"room": room, "count_after_refusal": listing, "refused_channel_after": after,
            "events": conference_events(cap, {a["uuid"], b["uuid"], c["uuid"]}, t_start)}


def scenario_mintwo(cap: Capture) -> dict:
    room = "cfcap-mintwo-" + uuidlib.uuid4().hex[:6]
    t_start = cap.now()
    vars_ = {"hangup_after_conference": "false"}
    a = cap.member(room, flags="mintwo", variables=vars_, record=False)
    cap.wait_events(lambda h: h.get("Action") == "add-member" and h.get("Unique-ID") == a["uuid"])
    alone = cap.api(f"conference {room} list count").strip()
    b = cap.member(room, variables=vars_, record=False)
    cap.wait_events(lambda h: h.get("Action") == "add-member" and h.get("Unique-ID") == b["uuid"])
    cap.hung_up(b)
    cap.wait_events(lambda h: h.get("Event-Name") == "CHANNEL_EXECUTE_COMPLETE" and h.get("Unique-ID") == a["uuid"], 3)
    after = cap.exists(a)
    cap.hung_up(a)
    return {"room": room, "count_while_alone": alone, "first_member_after_second_left": after,
            "events": conference_events(cap, {a["uuid"], b["uuid"]}, t_start)}


def scenario_wait_mod(cap: Capture) -> dict:
    """startConferenceOnEnter: conference flag wait-mod, the member that starts it is a moderator."""
    room = "cfcap-waitmod-" + uuidlib.uuid4().hex[:6]
    t_start = cap.now()
    vars_ = {"conference_flags": "wait-mod", "hangup_after_conference": "false"}
    w1 = cap.member(room, variables=vars_)
    w2 = cap.member(room, variables=vars_)
    cap.wait_events(lambda h: h.get("Action") == "add-member" and h.get("Unique-ID") == w2["uuid"])
    cap.say(w1, TONES[0])
    cap.say(w2, TONES[1])
    windows = []
    start = cap.now()
    gevent.sleep(WINDOW_S + 0.5)    # a measurement window, as hold() in scenario_three
    windows.append(("before_moderator", start, cap.now()))
    w3 = cap.member(room, flags="moderator", variables=vars_, record=False)
    cap.wait_events(lambda h: h.get("Action") == "add-member" and h.get("Unique-ID") == w3["uuid"])
    cap.say(w3, TONES[2])
    start = cap.now()
    gevent.sleep(WINDOW_S + 0.5)    # a measurement window
    windows.append(("after_moderator", start, cap.now()))
    for m in (w1, w2):
        cap.api(f"uuid_record {m['uuid']} stop {m['heard']}")
    cap.hung_up(w1, w2, w3)
    levels = {"member1": cap.levels(w1, windows), "member2": cap.levels(w2, windows)}
    for m in (w1, w2):
        os.unlink(m["heard"])
    return {"room": room, "levels": levels, "windows": [w[0] for w in windows],
            "events": conference_events(cap, {w1["uuid"], w2["uuid"], w3["uuid"]}, t_start)}


SCENARIOS = {"three": scenario_three, "endconf": scenario_endconf, "max_members": scenario_max_members,
             "mintwo": scenario_mintwo, "wait_mod": scenario_wait_mod}


def capture(address, password) -> dict:
    cap = Capture(address, password)
    try:
        version = cap.api("version").strip()
        results = {}
        for name, run in SCENARIOS.items():
            results[name] = run(cap)
        return {"freeswitch": version, "doc": __doc__.split("\n\n")[0].replace("\n", " "), "scenarios": results}
    finally:
        cap.close()


def main(argv):
    return capture_main(argv, doc=__doc__, capture=capture)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
