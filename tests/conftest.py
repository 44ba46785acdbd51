"""Test-suite setup: gevent monkey-patching before anything else, shared fixtures.

Tests talk to real things over real sockets: the simulator over TCP ESL, real WebSocket and HTTP
servers, real SQLite. Tests that need a real FreeSWITCH are marked `freeswitch` and run only when
CALLFORK_FS_ESL=host:port:password is set.
"""
from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
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


@pytest.fixture
def captures_dir():
    return CAPTURES
