"""Lines a peer can cause at will are rate-limited (issue 12): a flood of refused relay connections
and of ignored app messages logs at most `burst` lines a minute (per stream for app messages), while
the counters still count every one; the next line after a held-back run says how many were held."""
import json
import logging

import pytest
from websockets.exceptions import InvalidStatus

from audio_fork import Relay, StreamSession, StreamSpec
from audio_fork.log_limit import LogLimiter

from audio_fork_fakes import FakeSwitch
from relay_support import CALL, app, relay  # noqa: F401 (fixtures)
from waiting import wait_until
from ws_endpoint import connect


def _lines(caplog, text):
    return [r for r in caplog.records if text in r.getMessage()]


def test_refused_relay_connections_log_a_few_lines_and_count_all(relay, caplog):
    with caplog.at_level(logging.WARNING, logger="callfork.audio_fork.relay"):
        for n in range(40):
            with pytest.raises(InvalidStatus) as info:
                connect(relay.url_for(f"nope-{n}", "token"), subprotocols=["audio.drachtio.org"], timeout=3)
            assert info.value.response.status_code == 403
    assert relay.rejected == 40
    lines = _lines(caplog, "relay: 403")
    assert len(lines) == 10, [r.getMessage() for r in lines]
    assert "held back" in lines[-1].getMessage()
    other = Relay(("127.0.0.1", 0))   # each relay has its own budget
    other.start()
    try:
        with caplog.at_level(logging.WARNING, logger="callfork.audio_fork.relay"), pytest.raises(InvalidStatus):
            connect(other.url_for("nope", "token"), subprotocols=["audio.drachtio.org"], timeout=3)
    finally:
        other.stop()
    assert len(_lines(caplog, "relay: 403")) == 11


def _streaming(relay, app, stream_id):
    known = len(app.connections)
    fs = FakeSwitch([])
    session = StreamSession(StreamSpec(stream_id=stream_id, call_uuid=CALL, url=app.url, account_id="500025",
                                       connect_timeout=3.0), relay, fs.api, lambda name, detail: None)
    session.start()
    wait_until(lambda: len(app.connections) > known, 5, "the app's connection")
    conn = app.connections[known]
    fs.started.wait(3)
    fs.module.connected.wait(3)
    conn.wait_for(lambda c: any(json.loads(t)["event"] == "start" for t in c.texts()))
    return session, conn


def test_ignored_app_messages_log_a_few_lines_per_stream_and_count_all(relay, app, caplog):
    with caplog.at_level(logging.WARNING, logger="callfork.audio_fork.session"):
        first, conn = _streaming(relay, app, "loglimit-1")
        for _ in range(50):
            conn.send_text("not json")
        conn.send_text('{"event":"stop","streamId":"loglimit-1"}')
        assert first.wait(5)
        assert first.protocol_errors == 50 and relay.protocol_errors == 50
        assert len(_lines(caplog, "[%s loglimit-1] ignored app message" % CALL)) == 10
        second, conn = _streaming(relay, app, "loglimit-2")   # another stream's lines are its own
        conn.send_text("not json")
        conn.send_text('{"event":"stop","streamId":"loglimit-2"}')
        assert second.wait(5)
    assert len(_lines(caplog, "[%s loglimit-2] ignored app message" % CALL)) == 1


def test_the_line_after_a_held_back_run_counts_it():
    now = [0.0]
    limiter = LogLimiter(burst=2, window_s=60, max_keys=2, clock=lambda: now[0])
    logger = logging.getLogger("test.loglimit")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        assert [limiter.warning(logger, "bad %d", n) for n in range(5)] == [True, True, False, False, False]
        now[0] = 61.0
        assert limiter.warning(logger, "bad %d", 5)
        # at most max_keys windows are kept: a third key drops the oldest (None), which starts afresh
        assert limiter.warning(logger, "other", key="b") and limiter.warning(logger, "third", key="c")
        assert [limiter.warning(logger, "bad %d", n) for n in (6, 7, 8)] == [True, True, False]
    finally:
        logger.removeHandler(handler)
    messages = [r.getMessage() for r in records]
    assert messages[:2] == ["bad 0", "bad 1 (further ones are held back for up to 60 s)"]
    assert messages[2] == "bad 5 (3 more like this were not logged)"
