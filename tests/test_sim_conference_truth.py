"""The simulator's mod_conference against a real FreeSWITCH 1.10.12
(tests/fixtures/fs-captures/conference-mod.json, taken by tests/conference_capture.py): each captured
scenario is run again on the simulator, with members made the same way (the member's channel runs
`conference <room>@default[+flags{...}]` then `park`, with the same channel variables), and compared:
the order of the room's events (create, add/del, mute/unmute, deaf/undeaf, kick/hup, destroy) with
the member each is about and the room's size, the headers of a member event, the API's replies,
whether each member's channel outlived its conference app, and who heard whom (each tone heard, or
not, by each member in each window). The `dist-dtmf` capture
(tests/fixtures/fs-captures/conference-dtmf.json, tests/conference_dtmf_capture.py) is replayed with
members made of loopback pairs, as captured: who got which digits, and nothing of them in-band.
"""
import json
import time
from pathlib import Path
from urllib.parse import unquote

import gevent
import numpy as np
import pytest

from conference_capture import TONES, goertzel_dbfs
from switch_sim import Simulator
from switch_sim.caller import CallerModel, CallScript
from truth_capture import api_response, esl_connect
from waiting import wait_until

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "fs-captures" / "conference-mod.json").read_text())
ROOM_ACTIONS = ("conference-create", "conference-destroy", "add-member", "del-member", "mute-member",
                "unmute-member", "deaf-member", "undeaf-member", "kick-member", "hup-member")
HEARD_DB, SILENT_DB = -20.0, -45.0     # a tone is heard above, not heard below (dBFS)


class SimRun:
    """A simulator, an inbound ESL connection taking the events, and members as the capture made them."""

    def __init__(self):
        self.sim = Simulator(socket_target=("127.0.0.1", 9)).start()
        self.esl = esl_connect(self.sim.esl_address)
        self.esl.command("event plain CHANNEL_EXECUTE_COMPLETE CUSTOM conference::maintenance")
        self.events = []
        self.t0 = time.monotonic()
        self.reader = gevent.spawn(self._read)
        self.api_esl = esl_connect(self.sim.esl_address)

    def _read(self):
        while True:
            try:
                headers, body, _raw = self.esl.frame(timeout=3600)
            except Exception:
                return
            if headers.get("Content-Type") != "text/event-plain":
                continue
            inner = {}
            for line in body.decode().split("\n"):
                if ": " in line:
                    key, value = line.split(": ", 1)
                    inner.setdefault(key, unquote(value))
            self.events.append(inner)

    def now(self):
        return time.monotonic() - self.t0

    def api(self, line):
        self.api_esl.sock.sendall(("api " + line + "\n\n").encode())
        return api_response(self.api_esl)

    def member(self, room, flags="", variables=None, hz=None):
        audio = None
        if hz:
            t = np.arange(8000 * 30) / 8000
            audio = (np.sin(2 * np.pi * hz * t) * 10362).astype(np.int16)
        caller = CallerModel(CallScript(to="9999", keep_heard=True), audio)
        target = f"{room}@default" + (f"+flags{{{flags}}}" if flags else "")
        vars_ = {"conference_controls": "none"}
        vars_.update(variables or {})
        ch = self.sim.create_channel(direction="outbound", destination="9999", variables=vars_,
                                     dialplan=[("conference", target), ("park", "")], caller=caller,
                                     answer_first=True)
        member = {"ch": ch, "caller": caller, "t": self.now()}
        self.wait(lambda e: e.get("Action") == "add-member" and e.get("Unique-ID") == ch.uuid
                  or e.get("Event-Name") == "CHANNEL_EXECUTE_COMPLETE" and e.get("Unique-ID") == ch.uuid)
        return member

    def wait(self, predicate, timeout=5):
        wait_until(lambda: any(predicate(e) for e in self.events), timeout, "an event")

    def hold(self, windows, name, seconds=1.5):
        start = self.now()
        end = start + seconds
        wait_until(lambda: self.now() >= end, seconds + 2, "the window's end")
        windows.append((name, start, self.now()))

    def levels(self, member, windows, margin=0.4):
        heard = member["caller"].heard_samples()
        out = {}
        for name, start, end in windows:
            a = int(max(0.0, start + margin - member["t"]) * 8000)
            b = int(max(0.0, end - margin - member["t"]) * 8000)
            out[name] = {str(f): goertzel_dbfs(heard[a:b], 8000, f) for f in TONES}
        return out

    def close(self):
        self.reader.kill()
        self.esl.close()
        self.api_esl.close()
        self.sim.stop()


@pytest.fixture
def run():
    r = SimRun()
    yield r
    r.close()


def _room_sequence(events, room, uuids):
    """(action, member index, size) of the room's events, the member by its place in `uuids`."""
    index = {u: i for i, u in enumerate(uuids)}
    return [(e.get("Action"), index.get(e.get("Unique-ID")), e.get("Conference-Size"))
            for e in events if e.get("Conference-Name") == room and e.get("Action") in ROOM_ACTIONS]


def _who_heard(levels):
    """Per member and window: the tones heard, not heard, or in between (None)."""
    return {member: {window: {f: (True if db >= HEARD_DB else False if db <= SILENT_DB else None)
                              for f, db in tones.items()} for window, tones in wins.items()}
            for member, wins in levels.items()}


def _member_event_shape(headers):
    """A member event's header names: the room's, Floor, then (after the channel's) the member's."""
    keys = [k for k in headers if not k.startswith("variable_")]
    room = keys[keys.index("Conference-Name"):keys.index("Floor") + 1]
    member = keys[keys.index("Video"):]
    return room, member, "Unique-ID" in keys[keys.index("Floor"):keys.index("Video")]


def test_three_members_events_replies_and_mixing(run):
    cap = FIXTURE["scenarios"]["three"]
    room = "simcap-three"
    members = [run.member(room, flags="moderator" if i == 0 else "", hz=hz) for i, hz in enumerate(TONES)]
    uuids = [m["ch"].uuid for m in members]
    ids = {}
    for e in run.events:
        if e.get("Action") == "add-member":
            ids[e["Unique-ID"]] = e["Member-ID"]
    sim_ids = [ids[u] for u in uuids]
    real_ids = cap["member_ids"]
    windows = []
    wait_until(lambda: all(len(m["caller"].heard) > 25 for m in members), 5, "media")

    replies = {}
    # the same commands, with the windows of the capture between them
    script = [("hold", "all"), ("api", 0), ("hold", "m2_muted"), ("api", 1), ("api", 2), ("hold", "m1_deaf")]
    script += [("api", i) for i in range(3, len(cap["replies"]))]
    for kind, arg in script:
        if kind == "hold":
            run.hold(windows, arg)
            continue
        real = cap["replies"][arg]
        cmd = real["cmd"].replace("/tmp/callfork-conference-capture/conf-{ROOM}.wav", f"/tmp/simcap-{room}.wav")
        cmd = cmd.replace("{ROOM}", room)
        for real_id, sim_id in zip(real_ids, sim_ids):
            cmd = cmd.replace(f" {real_id}", f" {sim_id}") if cmd.split()[-1] == real_id else cmd
        replies[real["cmd"]] = (real["reply"], run.api(cmd))
        if "kick" in cmd and cmd.split()[-1] == sim_ids[2]:
            wait_until(lambda: members[2]["ch"].parked, 5, "the kicked member parked")
        if " hup " in cmd and cmd.split()[-1] == sim_ids[1]:
            wait_until(lambda: members[1]["ch"].parked, 5, "the hung-up member parked")
    # the API's replies
    for cmd, (want, got) in replies.items():
        want = want.replace("{ROOM}", room).replace("/tmp/callfork-conference-capture/conf-" + room + ".wav",
                                                    f"/tmp/simcap-{room}.wav")
        for real_id, sim_id in zip(real_ids, sim_ids):
            want = want.replace(f" {real_id}\n", f" {sim_id}\n")
        if cmd in ("conference {ROOM} list", "conference list"):
            rows = lambda text: [line.split(";") for line in text.splitlines() if ";" in line]   # noqa: E731
            assert [len(r) for r in rows(got)] == [len(r) for r in rows(want)], cmd
            assert [r[5] for r in rows(got)] == [r[5] for r in rows(want)], cmd
            assert [r[2] for r in rows(got)] == list(reversed(uuids)), cmd
            if cmd == "conference list":
                assert got.splitlines()[0].startswith(f"+OK Conference {room} (3 members rate: 8000 flags: ")
                assert got.splitlines()[0] == want.splitlines()[0].replace("{ROOM}", room), cmd
        elif cmd.endswith("json_list"):
            w, g = json.loads(want.replace("\t", " ")), json.loads(got)
            assert set(g[0]) == set(w[0]) and set(g[0]["members"][0]) == set(w[0]["members"][0])
            assert [m["id"] for m in g[0]["members"]] == [int(i) for i in reversed(sim_ids)]
        else:
            assert got == want, cmd
    # the room's events, in order (the last kick ends the room)
    run.wait(lambda e: e.get("Action") == "conference-destroy" and e.get("Conference-Name") == room)
    real_seq = _room_sequence([e["headers"] for e in cap["events"]], cap["room"], [m["uuid"] for m in cap["members"]])
    assert _room_sequence(run.events, room, uuids) == real_seq
    # a member event's headers
    real_add = next(e["headers"] for e in cap["events"] if e["headers"].get("Action") == "add-member")
    sim_add = next(e for e in run.events if e.get("Action") == "add-member")
    assert _member_event_shape(sim_add) == _member_event_shape(real_add)
    assert sim_add["Member-Type"] == "moderator" and sim_add["Energy-Level"] == "100"
    # who heard whom
    levels = {f"member{i + 1}": run.levels(m, windows[:3]) for i, m in enumerate(members)}
    real_levels = {m: {w: v for w, v in wins.items() if w != "after_kick_and_hup"} for m, wins in cap["levels"].items()}
    assert _who_heard(levels) == _who_heard(real_levels)
    # the kicked and hung-up members' channels went on (parked), as did the last one's
    assert cap["channel_after"] == {"kicked_member3": "true", "hup_member2": "true", "kick_all_member1": "true"}
    assert all(not m["ch"].hungup for m in members)


def test_endconf_hangs_up_the_others_unless_told_not_to(run):
    cap = FIXTURE["scenarios"]["endconf"]
    room = "simcap-endconf"
    e1 = run.member(room, flags="endconf")
    e2 = run.member(room, variables={"hangup_after_conference": "false"})
    e3 = run.member(room)
    e1["ch"].hangup("NORMAL_CLEARING")
    run.wait(lambda e: e.get("Action") == "conference-destroy" and e.get("Conference-Name") == room)
    wait_until(lambda: e3["ch"].hungup, 5, "the default member hung up")
    assert not e2["ch"].hungup and cap["channel_after"]["e2_hangup_after_conference_false"] == "true"
    assert cap["channel_after"]["e3_default"] == "false"
    uuids = [m["ch"].uuid for m in (e1, e2, e3)]
    real = [e["headers"] for e in cap["events"]]
    real_uuids = []
    for e in real:
        if e.get("Action") == "add-member":
            real_uuids.append(e["Unique-ID"])
    assert _room_sequence(run.events, room, uuids) == _room_sequence(real, cap["room"], real_uuids)
    dels = {e["Unique-ID"]: e for e in run.events if e.get("Action") == "del-member"}
    assert dels[e3["ch"].uuid].get("Hangup-Cause") == "NORMAL_CLEARING"
    assert "Hangup-Cause" not in dels[e2["ch"].uuid]


def test_max_members_refuses_without_an_event(run):
    cap = FIXTURE["scenarios"]["max_members"]
    room = "simcap-max"
    vars_ = {"conference_max_members": "2", "hangup_after_conference": "false"}
    members = [run.member(room, variables=vars_) for _ in range(3)]
    assert run.api(f"conference {room} list count") == cap["count_after_refusal"]
    refused = members[2]["ch"]
    assert not refused.hungup and refused.parked and cap["refused_channel_after"] == "true"
    assert not [e for e in run.events if e.get("Unique-ID") == refused.uuid and e.get("Event-Subclass")]
    real_uuids = [e["headers"]["Unique-ID"] for e in cap["events"] if e["headers"].get("Action") == "add-member"]
    for m in members:
        m["ch"].hangup("NORMAL_CLEARING")
    run.wait(lambda e: e.get("Action") == "conference-destroy" and e.get("Conference-Name") == room)
    uuids = [m["ch"].uuid for m in members[:2]]
    assert _room_sequence(run.events, room, uuids) == _room_sequence(
        [e["headers"] for e in cap["events"]], cap["room"], real_uuids)


def test_mintwo_puts_the_last_member_out(run):
    cap = FIXTURE["scenarios"]["mintwo"]
    room = "simcap-mintwo"
    vars_ = {"hangup_after_conference": "false"}
    a = run.member(room, flags="mintwo", variables=vars_)
    assert run.api(f"conference {room} list count") == cap["count_while_alone"]
    b = run.member(room, variables=vars_)
    b["ch"].hangup("NORMAL_CLEARING")
    run.wait(lambda e: e.get("Action") == "conference-destroy" and e.get("Conference-Name") == room)
    wait_until(lambda: a["ch"].parked, 5, "the last member parked")
    assert not a["ch"].hungup and cap["first_member_after_second_left"] == "true"
    real_uuids = [e["headers"]["Unique-ID"] for e in cap["events"] if e["headers"].get("Action") == "add-member"]
    assert _room_sequence(run.events, room, [a["ch"].uuid, b["ch"].uuid]) == _room_sequence(
        [e["headers"] for e in cap["events"]], cap["room"], real_uuids)


def test_wait_mod_nobody_hears_anyone_until_a_moderator(run):
    cap = FIXTURE["scenarios"]["wait_mod"]
    room = "simcap-waitmod"
    vars_ = {"conference_flags": "wait-mod", "hangup_after_conference": "false"}
    w1 = run.member(room, variables=vars_, hz=TONES[0])
    w2 = run.member(room, variables=vars_, hz=TONES[1])
    windows = []
    run.hold(windows, "before_moderator", 2.0)
    run.member(room, flags="moderator", variables=vars_, hz=TONES[2])
    run.hold(windows, "after_moderator", 2.0)
    levels = {"member1": run.levels(w1, windows), "member2": run.levels(w2, windows)}
    assert _who_heard(levels) == _who_heard(cap["levels"])


DTMF_FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "fs-captures" / "conference-dtmf.json").read_text())


def _loopback_member(run, room, flags, hz=None):
    """A member as the DTMF capture made it: a loopback pair whose -b leg is the member (its apps
    inline: the conference, then park) and whose -a leg is its phone, here bridged from a simulated
    caller that keeps what the phone was given (what the member's channel wrote)."""
    audio = None
    if hz:
        t = np.arange(8000 * 30) / 8000
        audio = (np.sin(2 * np.pi * hz * t) * 10362).astype(np.int16)
    caller = CallerModel(CallScript(to="9999", keep_heard=True), audio)
    block = "{conference_controls=none,hangup_after_conference=false}"
    target = f"{room}@default" + (f"+flags{{{flags}}}" if flags else "")
    dial = f"{block}loopback/m:^:conference:{target}^park/default/inline"
    known = {e.get("Unique-ID") for e in run.events if e.get("Action") == "add-member"}
    ch = run.sim.create_channel(direction="outbound", destination="9999", dialplan=[("bridge", dial)],
                                caller=caller, answer_first=True)
    run.wait(lambda e: e.get("Action") == "add-member" and e.get("Conference-Name") == room
             and e.get("Unique-ID") not in known)
    uuid = next(e["Unique-ID"] for e in run.events if e.get("Action") == "add-member"
                and e.get("Conference-Name") == room and e.get("Unique-ID") not in known)
    phone = run.sim.get_channel(uuid).get_variable("other_loopback_leg_uuid")
    return {"uuid": uuid, "phone": phone, "caller": caller, "ch": ch}


def _digits_by_leg(rows):
    out = {}
    for leg, digit in rows:
        out[leg] = out.get(leg, "") + digit
    return out


def test_dist_dtmf_sends_a_members_digits_to_the_others(run):
    cap = DTMF_FIXTURE["scenarios"]["dist_dtmf"]
    room = "simcap-dtmf"
    run.esl.sock.sendall(b"event plain DTMF\n\n")     # the reader skips the reply
    members = [_loopback_member(run, room, cap["flags"][f"member{i}"]) for i in (1, 2, 3)]
    legs = {}
    for i, m in enumerate(members):
        legs[m["uuid"]] = f"member{i + 1}"
        legs[m["phone"]] = f"member{i + 1}_phone"
    heard_from = len(members[1]["caller"].heard) * 160
    replies = [run.api(f"uuid_send_dtmf {members[0]['phone']} 12#").strip()]
    wait_until(lambda: len([e for e in run.events if e.get("Event-Name") == "DTMF"]) >= 9, 5, "the relayed digits")
    run.hold([], "digits", 0.5)
    heard_to = len(members[1]["caller"].heard) * 160
    replies.append(run.api(f"uuid_send_dtmf {members[1]['phone']} 45").strip())
    wait_until(lambda: len([e for e in run.events if e.get("Event-Name") == "DTMF"]) >= 11, 5, "member 2's digits")
    run.hold([], "after", 1.0)
    rows = [(legs[e["Unique-ID"]], e["DTMF-Digit"]) for e in run.events
            if e.get("Event-Name") == "DTMF" and e.get("Unique-ID") in legs]
    real_rows = [(r["leg"], r["digit"]) for r in cap["dtmf"]]
    # who got which digits, each leg's in order: the pressing member (its own reading), every other
    # member's phone for member 1's dist-dtmf, nobody for member 2's digits (no flag)
    assert _digits_by_leg(rows) == _digits_by_leg(real_rows)
    assert _digits_by_leg(real_rows) == {"member1": "12#", "member2_phone": "12#", "member3_phone": "12#",
                                         "member2": "45"}
    assert [r.replace(members[0]["phone"], "{M1_PHONE}").replace(members[1]["phone"], "{M2_PHONE}")
            for r in replies] == cap["send_replies"]
    # out of band: nothing of the digits is in what member 2 was given to hear
    heard = members[1]["caller"].heard_samples()[heard_from:heard_to]
    assert len(heard) >= 4000
    real_db = cap["member2_heard_digit1_dbfs"]
    assert real_db["1209"] <= SILENT_DB
    assert goertzel_dbfs(heard, 8000, 1209) <= SILENT_DB
    for m in members:
        m["ch"].hangup("NORMAL_CLEARING")


def test_dist_dtmf_to_a_simulated_caller_is_played_as_tones(run):
    """Out of the simulator's own caller channel a relayed digit is the digit's tone in what the
    caller hears (the simulator's approximation of an endpoint; see switch_sim/conference_dtmf.py)."""
    room = "simcap-dtmf-tones"
    presser = run.member(room, flags="dist-dtmf")
    other = run.member(room)
    start = len(other["caller"].heard) * 160
    presser["ch"].queue_dtmf("1")
    run.hold([], "tone", 0.8)
    heard = other["caller"].heard_samples()[start:]
    assert goertzel_dbfs(heard, 8000, 697) > HEARD_DB - 10 and goertzel_dbfs(heard, 8000, 1209) > HEARD_DB - 10
    for m in (presser, other):
        m["ch"].hangup("NORMAL_CLEARING")
