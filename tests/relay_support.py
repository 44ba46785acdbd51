"""Shared by the relay tests: the call UUID they use and the `relay` (audio_fork.Relay on a free
port) and `app` (tests/wsapp.py's WebSocket app server) fixtures. Import the fixtures by name."""
import pytest

from audio_fork import Relay
from wsapp import AppServer

CALL = "9dd7090c-3e3e-4b8c-8117-90d534a05e15"


@pytest.fixture
def relay():
    r = Relay(("127.0.0.1", 0))
    r.start()
    yield r
    r.stop()


@pytest.fixture
def app():
    server = AppServer().start()
    yield server
    server.stop()
