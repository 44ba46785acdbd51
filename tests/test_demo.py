"""`callfork demo` as a user runs it: a subprocess, no FreeSWITCH, no internet."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_a_call_end_to_end(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path))
    env.pop("CALLFORK_CONFIG", None)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "callfork.cli", "demo"], cwd=str(tmp_path), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, out
    assert elapsed < 45, elapsed
    # the stream, as the echo bot saw it: start, the echoed checkpoints, the close
    stream = out.split("== the stream, as the echo bot saw it ==")[1].split("==")[0]
    assert "start: {" in stream and "playedStream" in stream and "closed by callfork, code 1000" in stream
    # the webhooks the app got, and callfork's own record of their delivery
    received = out.split("== webhooks the sample app received ==")[1].split("==")[0]
    for event in ("StartApp", "Record", "StartStream", "PlayedStream", "StopStream", "Hangup", "RecordStop"):
        assert re.search(rf"Event={event}\b", received), event
    deliveries = out.split("== webhook deliveries (callfork's durable outbox) ==")[1].split("==")[0]
    lines = [line.split() for line in deliveries.strip().splitlines()]
    assert lines and all(parts[1] == "delivered" and parts[3] == "200" for parts in lines), deliveries
    assert {"Hangup", "RecordStop", "StartStream"} <= {parts[0] for parts in lines}
    # the recording exists where the demo says it is
    recordings = out.split("== recordings ==")[1].split("what the caller heard")[0]
    path = Path(re.search(r": (\S+\.wav) \((\d+) ms", recordings).group(1))
    assert path.exists() and path.stat().st_size > 44
    assert int(re.search(r"\((\d+) ms", recordings).group(1)) > 1000
    heard = Path(re.search(r"what the caller heard: (\S+)", out).group(1))
    assert heard.exists()
