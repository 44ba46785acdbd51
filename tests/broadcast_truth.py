"""What FreeSWITCH 1.10.12's `uuid_broadcast <A> <app::arg> <legs>` does to a bridged call, captured
on a real FreeSWITCH over raw inbound ESL and replayed on the simulator
(tests/test_sim_broadcast_truth.py). callfork's REST Speak on a live call is such a broadcast
(callfork/live_controls.py), and a <Dial> bridge is such a call.

Each case is a case of tests/bridge_truth.py (the A-leg parked on loopback/9999, recorded in
stereo; `bridge` to loopback/9998, which answers and plays 440 Hz endlessly; the B-leg U1 recorded
in stereo from 0.3 s after the bridge: what it writes, i.e. what the callee hears), plus, 0.6 s
after the bridge, `uuid_broadcast A playback::tone_stream://%(1000,0,1200) <legs>`: one second of
1200 Hz. Kept: each leg's events (bridge_truth's, plus the broadcast's playback EXECUTE /
EXECUTE_COMPLETE), the API's reply, what the caller heard and what the callee heard per 200 ms
(the dominant frequency, 0 for silence).

What it showed (switch_ivr_broadcast, and audio_bridge_thread in switch_ivr_bridge.c): `bleg`
queues the app on the A-leg's bridge partner only, `aleg` on the A-leg only, `both` on both; a
bridged leg runs a queued app at once, inside its bridge (no UNBRIDGE), and while it runs that leg
writes only the app's audio to its own far end and nothing reaches the other leg's far end: the
bridge is suspended both ways for the app's time, then goes on.

    python tests/broadcast_truth.py capture --esl 127.0.0.1:8021:ClueCon --out tests/fixtures/fs-captures/bridge-broadcast.json
    python tests/broadcast_truth.py sim          # the same cases on the simulator, differences printed

Needs what tests/bridge_truth.py needs; no callfork, no port 8084.
"""
from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey
    monkey.patch_all()

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

import bridge_truth  # noqa: E402
import truth_capture  # noqa: E402

TONE_FILE = "tone_stream://%(1000,0,1200)"
TONE = "playback::" + TONE_FILE


def cases() -> list[dict]:
    dial = "[origination_uuid={U1},RECORD_STEREO=true]loopback/9998/default"
    out = []
    for legs in ("bleg", "aleg", "both"):
        out.append({"name": f"broadcast_{legs}_during_bridge", "vars": bridge_truth.A_VARS, "dial": dial,
                    "actions": [["A", "CHANNEL_BRIDGE", 0.3, "record U1"],
                                ["A", "CHANNEL_BRIDGE", 0.6, f"broadcast A {legs}"],
                                ["A", "CHANNEL_BRIDGE", 2.6, "kill U1"]],
                    "listen": True})
    return out


class Run(bridge_truth.Run):
    """bridge_truth's run, with the `broadcast <leg> <legs>` action, keeping the playback apps' events."""

    def _act(self, action: str) -> None:
        verb, who, *rest = action.split(" ")
        if verb != "broadcast":
            return super()._act(action)
        target = self.a if who == "A" else self.b[who]
        self.esl.send(f"api uuid_broadcast {target} {TONE} {rest[0]}\n\n")
        self.replies.append([action, None])
        self.awaiting_reply = self.replies[-1]

    def result(self) -> dict:
        out = super().result()
        out["legs"] = self._legs()
        return out

    def _legs(self) -> dict:
        """bridge_truth's events per leg, in order, with the broadcast's playback EXECUTE /
        EXECUTE_COMPLETE among them (bridge_truth keeps only bridge's; 9998's own endless tone is
        a playback too, of another file)."""
        uuids = dict(self.labels)
        legs: dict = {}
        for _t, label, ev in self.events:
            name = ev.get("Event-Name")
            if name in ("CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE") and ev.get("Application") != "bridge":
                if ev.get("Application") == "playback" and ev.get("Application-Data") == TONE_FILE:
                    legs.setdefault(label, []).append({"event": "BROADCAST_" + name})
                continue
            if name not in bridge_truth.WATCHED:
                continue
            kept = {"event": name}
            kept.update({k: bridge_truth._clean(ev[k], uuids) for k in bridge_truth.HEADERS if k in ev})
            legs.setdefault(label, []).append(kept)
        return legs


def run_case(esl, case: dict, caller_dtmf, record_dir=bridge_truth.TONE_DIR) -> dict:
    original = bridge_truth.Run
    bridge_truth.Run = Run
    try:
        return bridge_truth.run_case(esl, case, caller_dtmf, record_dir)
    finally:
        bridge_truth.Run = original


def run(address, password, caller_dtmf, pace: float = 0.3) -> list[dict]:
    import time
    esl = bridge_truth.subscribed(address, password)
    results = []
    try:
        for case in cases():
            time.sleep(pace)   # pacing: the cases spaced out on the real switch (0 on the simulator)
            results.append(run_case(esl, case, caller_dtmf))
    finally:
        esl.close()
    return results


def capture(address, password: str) -> list[dict]:
    return run(address, password, bridge_truth._real_dtmf)


def replay(sim) -> list[dict]:
    return run(sim.esl_address, "ClueCon", bridge_truth.sim_dtmf, pace=0.0)


def _after_bridge_dropped(case: dict) -> dict:
    """The case without the A-leg's broadcast events after its bridge completed: the A-leg's
    queued app waits for the bridge, and whether it starts before the capture's uuid_kill of the
    A-leg (sent when the bridge completed) is a race of the capture, not the switch's behaviour."""
    events = case["legs"].get("A", [])
    done = [i for i, e in enumerate(events) if e["event"] == "CHANNEL_EXECUTE_COMPLETE"]
    if done:
        events = events[:done[0]] + [e for e in events[done[0]:] if not e["event"].startswith("BROADCAST_")]
    return {**case, "legs": {**case["legs"], "A": events}}


def compare(expected: list, got: list, label: str = "simulator") -> list:
    return bridge_truth.compare([_after_bridge_dropped(c) for c in expected],
                                [_after_bridge_dropped(c) for c in got], label)


def main(argv=None) -> int:
    return truth_capture.main(argv, doc=__doc__, fixture="bridge-broadcast.json", capture=capture,
                              replay=replay, compare=compare, doc_paragraphs=1)


if __name__ == "__main__":
    sys.exit(main())
