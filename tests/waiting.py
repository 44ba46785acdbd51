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


def wav_complete(path) -> bool:
    """A WAV file its writer has closed: readable, and its header counts (nearly) all of its bytes
    (libsndfile writes the data size into the header when the file is closed)."""
    import os

    import soundfile
    try:
        info = soundfile.info(str(path))
        size = os.path.getsize(path)
    except Exception:  # noqa: BLE001 - not there yet, or its header not written yet
        return False
    data = info.frames * info.channels * 2
    return data > 0 and size - data <= 4096
