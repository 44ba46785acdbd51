"""Test-suite setup: gevent monkey-patching before anything else, shared fixtures.

Tests talk to real things over real sockets: the simulator over TCP ESL, real WebSocket and HTTP
servers, real SQLite. Tests that need a real FreeSWITCH are marked `freeswitch` and run only when
CALLFORK_FS_ESL=host:port:password is set.
"""
import os

from gevent import monkey

if os.environ.get("PYTEST_XDIST_WORKER"):
    # a pytest-xdist worker (make test: -n N): execnet talks to the controller from a real thread,
    # which patched threads would turn into a greenlet that blocks the hub (LoopExit); the code under
    # test uses gevent's own greenlets, events and queues, and everything else is patched as in
    # production
    monkey.patch_all(thread=False)
else:
    monkey.patch_all()

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
CAPTURES = FIXTURES / "fs-captures"


def pytest_collection_modifyitems(config, items):
    if os.environ.get("CALLFORK_FS_ESL"):
        return
    skip = pytest.mark.skip(reason="needs a real FreeSWITCH: set CALLFORK_FS_ESL=host:port:password")
    for item in items:
        if "freeswitch" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _one_real_switch_test_at_a_time(request):
    """Tests on the real switch run one at a time, whichever pytest-xdist worker has them (make test
    runs -n N): its dialplan sends every call to one socket port. The lock is a file lock shared by
    the workers, held for the test; waiting for it blocks only this worker."""
    if "freeswitch" not in request.keywords or not os.environ.get("CALLFORK_FS_ESL"):
        yield
        return
    import fcntl
    import tempfile
    with open(os.path.join(tempfile.gettempdir(), "callfork-real-switch-tests.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
def captures_dir():
    return CAPTURES

