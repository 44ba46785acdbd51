"""A stream that has ended is freed by reference counting, with no help from the cyclic GC: its
StreamSession, app connection, module connection and playout queue are in no
reference cycle once it is over. A cycle would leave every ended stream's objects (~100 per
stream) to the GC's full collections, which pause the whole hub for tens of ms under load. Real
sockets: Relay + StreamSession, a fake mod_audio_fork client (audio_fork_fakes.FakeSwitch) and a
real app WebSocket server (tests/wsapp.py)."""
import base64
import gc
import json
import weakref

import pytest

from audio_fork import StreamSession, StreamSpec

from audio_fork_fakes import FakeSwitch
from relay_support import CALL, app, relay  # noqa: F401 (fixtures)
from waiting import wait_until



@pytest.fixture
def no_cyclic_gc():
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _refs(s: StreamSession) -> dict:
    return {"session": weakref.ref(s), "app connection": weakref.ref(s.app_connection),
            "module connection": weakref.ref(s.module_connection), "playout queue": weakref.ref(s.playout)}


def _alive(refs: dict) -> list:
    return [name for name, ref in refs.items() if ref() is not None]


@pytest.mark.parametrize("dialect", ["vobiz", "twilio"])
def test_an_ended_one_way_stream_leaves_nothing_for_the_cyclic_gc(relay, app, no_cyclic_gc, dialect):
    fs = FakeSwitch([bytes(320)] * 20, interval=0.02)
    s = StreamSession(StreamSpec(stream_id="gc-1", call_uuid=CALL, url=app.url, dialect=dialect,
                                 connect_timeout=3.0), relay, fs.api)
    s.start()
    conn = app.wait_connection()
    conn.wait_for(lambda c: sum('"media"' in t for t in c.texts()) >= 5)
    refs = _refs(s)
    s.stop()
    wait_until(lambda: relay.streams_live == 0, timeout=5)
    del s
    # the killed greenlets run their GreenletExit, then refcounting alone frees everything (the
    # cyclic GC is off: anything in a cycle stays alive and this times out)
    wait_until(lambda: _alive(refs) == [], timeout=3, what="the stream's objects freed")


def test_an_ended_bidirectional_stream_stopped_mid_playout_leaves_nothing_for_the_cyclic_gc(
        relay, app, no_cyclic_gc):
    fs = FakeSwitch([])
    s = StreamSession(StreamSpec(stream_id="gc-2", call_uuid=CALL, url=app.url, bidirectional=True,
                                 connect_timeout=3.0), relay, fs.api)
    s.start()
    conn = app.wait_connection()
    fs.module.connected.wait(3)
    conn.wait_for(lambda c: any(json.loads(t)["event"] == "start" for t in c.texts()))
    conn.send_text(json.dumps({"event": "playAudio", "media": {"contentType": "audio/x-l16", "sampleRate": 8000,
                                                               "payload": base64.b64encode(bytes(16000)).decode()}}))
    conn.send_text('{"event":"checkpoint","name":"cp"}')
    fs.module.wait_for(lambda m: len(m.binary) >= 5)  # the pacer is busy: stop() kills it mid-utterance
    refs = _refs(s)
    s.stop()
    wait_until(lambda: relay.streams_live == 0, timeout=5)
    del s
    wait_until(lambda: _alive(refs) == [], timeout=3, what="the stream's objects freed")
