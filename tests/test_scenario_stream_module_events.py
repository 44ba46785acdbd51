"""mod_audio_fork's events reach the stream they are for: a `buffer_overrun` (the module dropping
the call's audio because its socket does not keep up) is posted as DegradedStream, for the stream
the module names (`media-bugname`, as newer builds send) or, when it names none (the pinned
builds), for every stream whose fork runs; a `connect_failed` without a name fails only the stream
that has waited longest for its module, not the others on the call.

The events come from the simulated FreeSWITCH channel (as FreeSWITCH fires them: CUSTOM, the
channel's data, the module's JSON body); the routing is also checked directly on the call's
streams for connect_failed, whose moment (both forks still connecting) a call cannot hold open."""
import json
from types import SimpleNamespace

import requests

from api_support import parse_metrics
from esl_app import ESLEvent
from harness import Stack
from stream_scenarios import Calls, wait_until
from wsapp import AppServer as WsApp

from verbs.streaming import MODULE_EVENTS, route_module_event


def _two_streams(stack, app_a, app_b):
    calls = Calls(stack)
    calls.add("1", f'<Response><Stream statusCallbackUrl="{calls.url("/a")}">{app_a.url}</Stream>'
                   f'<Stream statusCallbackUrl="{calls.url("/b")}">{app_b.url}</Stream>'
                   f'<Wait length="6"/></Response>')
    call = stack.call(to="1", hangup_after=8)
    a, b = app_a.wait_connection(10), app_b.wait_connection(10)
    sid = {}
    for name, conn in (("a", a), ("b", b)):
        conn.wait_for(lambda c: c.texts(), 5)
        sid[name] = json.loads(conn.texts()[0])["start"]["streamId"]
        conn.wait_for(lambda c: len(c.texts()) >= 10, 5)   # media flows: the fork runs
    return call, sid


def _metrics(stack) -> dict:
    text = requests.get(stack.http_url + "/metrics", timeout=5).text
    return parse_metrics(text)


def _degraded(stack, path):
    return [r.form for r in stack.app.requests if r.path == path and r.form.get("Event") == "DegradedStream"]


def test_buffer_overrun_posts_degraded_stream_for_the_named_stream_or_all():
    app_a, app_b = WsApp().start(), WsApp().start()
    try:
        with Stack() as stack:
            call, sid = _two_streams(stack, app_a, app_b)
            channel = stack.sim.get_channel(call.uuid)
            channel.fire_event("CUSTOM", subclass="mod_audio_fork::buffer_overrun",
                               extra_headers=[("media-bugname", f"callfork_{sid['b']}")])
            wait_until(lambda: _degraded(stack, "/b"), 5, "DegradedStream for b")
            assert not _degraded(stack, "/a")
            assert "buffer overrun" in _degraded(stack, "/b")[0]["Error"]
            assert _degraded(stack, "/b")[0]["StreamID"] == sid["b"]
            # the pinned module names no bug: every running fork may be the one
            channel.fire_event("CUSTOM", subclass="mod_audio_fork::buffer_overrun")
            # (b's second within 10 s of its first is coalesced: posted with the count when b ends)
            wait_until(lambda: _degraded(stack, "/a"), 5, "a degraded")
            # an app message callfork cannot use is ignored, and counted
            app_a.connections[0].send_text("{not json")
            metrics = {}
            wait_until(lambda: metrics.update(_metrics(stack)) or metrics["callfork_app_protocol_errors_total"] >= 1,
                       5, "protocol error counted")
            assert metrics["callfork_module_overruns_total"] == 3
            assert metrics["callfork_relay_rejected_total"] == 0
            call.wait(20)
            wait_until(lambda: len(_degraded(stack, "/b")) == 2, 10, "b's coalesced DegradedStream")
            a, b = _degraded(stack, "/a"), _degraded(stack, "/b")
    finally:
        app_a.stop()
        app_b.stop()
    assert [h["Occurrences"] for h in b] == ["1", "1"] and b[1]["StreamID"] == sid["b"]
    assert [h["Occurrences"] for h in a] == ["1"]


class _Session:
    def __init__(self, bugname, waiting):
        self.bugname = bugname
        self.accepting_module = waiting
        self.forking = not waiting
        self.seen = []

    def on_module_event(self, subclass, body):
        self.seen.append((subclass, body))


def _stream(bugname, waiting=True):
    return SimpleNamespace(session=_Session(bugname, waiting), ended=SimpleNamespace(is_set=lambda: False))


def _event(subclass, **headers):
    return ESLEvent({"Event-Name": "CUSTOM", "Event-Subclass": subclass, **headers}, body='{"reason":"refused"}')


def test_connect_failed_without_a_bug_name_fails_one_stream_only():
    first, second, running = _stream("callfork_1"), _stream("callfork_2"), _stream("callfork_3", waiting=False)
    call = SimpleNamespace(streams={"1": first, "2": second, "3": running})
    assert "mod_audio_fork::connect_failed" in MODULE_EVENTS
    route_module_event(call, _event("mod_audio_fork::connect_failed"))
    assert first.session.seen == [("mod_audio_fork::connect_failed", {"reason": "refused"})]
    assert second.session.seen == [] and running.session.seen == []
    route_module_event(call, _event("mod_audio_fork::connect_failed", **{"media-bugname": "callfork_2"}))
    assert len(second.session.seen) == 1 and len(first.session.seen) == 1
