"""Waiting on a condition in tests: poll it with a deadline, never sleep a fixed time and hope."""
import time

import gevent


def wait_until(predicate, timeout: float, what: str = "condition", interval: float = 0.02):
    """Return predicate()'s first truthy value; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        gevent.sleep(interval)
