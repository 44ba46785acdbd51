"""audio_fork.app_sender.AppSender over a real connection to a hand-written app server
(raw_ws_app.py): texts written at once while nothing waits, a held batch in one write and in order,
a slow app that fills the bounded queue (media dropped and counted, `degraded` once, control
messages still kept), a dead app reported once, and a keepalive ping to an idle app."""
import gevent
import pytest

from audio_fork import Relay
from audio_fork.app_connection import AppConnection
from audio_fork.app_sender import AppSender

from raw_ws_app import RawApp, read_client_frames
from waiting import wait_until


@pytest.fixture
def opened():
    made = []

    def make(script, **kw):
        app = RawApp(script=script)
        conn = AppConnection.connect(app.url, timeout=3, **kw)
        made.append((app, conn))
        return conn
    yield make
    for app, conn in made:
        conn.shutdown()
        app.stop()


def sender_for(conn, limit=100, keepalive=20.0, send_timeout=2.0):
    reports = {"degraded": [], "lost": []}
    sender = AppSender(conn, limit, Relay(), "[test]", send_timeout=send_timeout, keepalive_seconds=keepalive,
                       on_degraded=reports["degraded"].append, on_lost=reports["lost"].append)
    return sender, reports


def test_texts_are_written_at_once_while_nothing_is_queued(opened):
    got = []
    conn = opened(lambda sock: read_client_frames(sock, 2, out=got))
    sender, reports = sender_for(conn)
    sender.send("one")
    sender.send("two", control=True)
    assert len(sender.queue) == 0            # no writer greenlet runs here: nothing waited for it
    wait_until(lambda: len(got) == 2, 5, "both texts")
    assert [data for _, _, data in got] == [b"one", b"two"]
    assert reports == {"degraded": [], "lost": []}


def test_a_held_batch_goes_out_in_order(opened):
    got = []
    conn = opened(lambda sock: read_client_frames(sock, 4, out=got))
    sender, _ = sender_for(conn)
    sender.send("before")
    sender.hold()
    for text in ("a", "b", "c"):
        sender.send(text)
    sender.flush_held()
    wait_until(lambda: len(got) == 4, 5, "four texts")
    assert [data for _, _, data in got] == [b"before", b"a", b"b", b"c"]


def test_an_app_that_does_not_read_loses_media_not_control_and_is_reported_degraded_once(opened):
    stalled = gevent.event.Event()
    conn = opened(lambda sock: stalled.wait(30), sndbuf=4096)
    sender, reports = sender_for(conn, limit=10, send_timeout=60.0)
    writer = gevent.spawn(sender.run_writer)
    try:
        text = "x" * 2000
        for _ in range(2000):
            sender.send(text)
            gevent.sleep(0)
        assert sender.dropped > 0 and sender.relay.app_dropped == sender.dropped
        assert len(reports["degraded"]) == 1 and reports["degraded"][0]["dropped"] >= 1
        before = len(sender.queue)
        sender.send("control", control=True)
        assert len(sender.queue) == before + 1
        assert reports["lost"] == []
    finally:
        stalled.set()
        writer.kill()


def test_a_dead_app_is_reported_lost_once(opened):
    conn = opened(lambda sock: sock.close())
    sender, reports = sender_for(conn)
    writer = gevent.spawn(sender.run_writer)
    try:
        def send_until_lost():
            sender.send("y" * 500)
            return reports["lost"]
        wait_until(send_until_lost, 5, "the lost report")
        for _ in range(20):
            sender.send("z")      # the app is gone: nothing more is written, nothing more reported
        gevent.sleep(0)           # the writer, if it still ran, would fail now
        assert len(reports["lost"]) == 1
        assert any(name in reports["lost"][0] for name in ("BrokenPipe", "ConnectionReset"))
    finally:
        writer.kill()


def test_an_idle_app_gets_a_keepalive_ping_and_close_ends_the_writer(opened):
    got = []
    conn = opened(lambda sock: read_client_frames(sock, 100, out=got))
    sender, _ = sender_for(conn, keepalive=0.2)
    writer = gevent.spawn(sender.run_writer)
    wait_until(lambda: got, 5, "a ping")
    assert got[0][0] == 9
    sender.queue.put("last")
    sender.close()
    writer.join(5)
    assert writer.dead
    wait_until(lambda: (1, True, b"last") in got, 5, "the queued text")

