"""Free loopback ports for the servers the tests start (callfork serve's listeners, the simulator's
ESL when a test names it, redis-server, PostgreSQL, Kamailio): picked where no other socket of this
machine is handed a port by the kernel.

A port found with bind(("127.0.0.1", 0)) and released comes from the kernel's ephemeral range
(net.ipv4.ip_local_port_range), where every outgoing connection and every other bind to port 0 on
the machine also draws theirs: in a parallel suite one of those took such a port before the server
the test started could bind it ("Address already in use"). So `free_port` picks below the ephemeral
range, in a stripe of its own for each pytest-xdist worker (gw0, gw1, ...), going round the stripe
from a random start, and returns the first port it can bind now.
"""
from __future__ import annotations

import itertools
import os
import random
import socket

FIRST = 10000      # below: well-known and registered services' usual ports
STRIPE = 4000      # ports per xdist worker


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _stripe() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    low = _ephemeral_low()
    stripes = max(1, (low - FIRST) // STRIPE)
    start = FIRST + (index % stripes) * STRIPE
    return range(start, min(start + STRIPE, low))


_STRIPE = _stripe()


def _candidates():
    offset = random.randrange(len(_STRIPE))
    return itertools.chain(_STRIPE[offset:], _STRIPE[:offset])


_ORDER = _candidates() if len(_STRIPE) else iter(())


def free_port() -> int:
    """A loopback TCP port nothing listens on now, outside the ephemeral range (see the module
    docstring); one from the ephemeral range when the machine leaves no room below it."""
    global _ORDER
    for _ in range(len(_STRIPE)):
        try:
            port = next(_ORDER)
        except StopIteration:
            _ORDER = _candidates()
            port = next(_ORDER)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
