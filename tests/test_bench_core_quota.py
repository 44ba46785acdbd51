"""The workers benchmark's per-core scaling mode (bench/core_quota.py): a process put in a CPU cgroup
at quota Q gets about Q of a core, the group holds that process and nothing else, and the groups are
gone afterwards; the benchmark rigs hold exactly their worker processes (the relay processes; the
callfork service processes), never the load generator, sink, switch or app.

A functional check of the throttle, not a performance assertion: the band is wide because the
machine is shared. Skipped, with the reason, where no CPU cgroup can be made (no root, no writable
cgroup file system)."""
import os
import subprocess
import sys
import time

import pytest

from bench import core_quota

from waiting import wait_until

OK, WHERE = core_quota.available()
needs_cgroups = pytest.mark.skipif(not OK, reason=f"no writable CPU cgroup here: {WHERE}")


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_cgroup(pid: int) -> str:
    """The process's path in the CPU hierarchy (v1 `cpu` line, else the v2 line)."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    for _id, controllers, path in lines:
        if "cpu" in controllers.split(","):
            return path
    return next(path for _id, controllers, path in lines if controllers == "")


@pytest.fixture
def busy():
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield proc
    finally:
        proc.kill()   # our own child, by its handle
        proc.wait(timeout=10)


@needs_cgroups
def test_a_busy_process_held_to_0_3_core_gets_about_0_3_and_its_group_is_removed(busy):
    groups = core_quota.Groups(0.3)
    try:
        group = groups.hold(busy.pid, "test-busy")
        assert group.members() == [busy.pid]
        assert _cpu_cgroup(busy.pid).endswith("/" + os.path.basename(group.path))
        c0, t0 = _cpu_s(busy.pid), time.monotonic()
        # about 1 s of wall at 0.3 core: wait for 0.3 s of its CPU (unthrottled it takes 0.3 s)
        wait_until(lambda: _cpu_s(busy.pid) - c0 >= 0.3, 15, "0.3 s of CPU in the held process")
        share = (_cpu_s(busy.pid) - c0) / (time.monotonic() - t0)
        assert 0.15 <= share <= 0.45, share
        st = group.stat()
        assert st["periods"] > 0 and st["throttled"] > 0.5 * st["periods"], st
    finally:
        assert groups.close() == []
    assert not os.path.exists(group.path)
    assert busy.poll() is None   # still running: moved back to the root group, not killed
    assert _cpu_cgroup(busy.pid) == "/"
    assert not [n for n in os.listdir(groups.root) if n.startswith(f"{core_quota.PREFIX}{os.getpid()}-")]


@needs_cgroups
def test_a_group_whose_process_has_exited_is_removed_too(busy):
    groups = core_quota.Groups(0.5)
    group = groups.hold(busy.pid, "test-exit")
    busy.kill()
    busy.wait(timeout=10)
    assert groups.close() == []
    assert not os.path.exists(group.path)


def test_a_quota_below_the_kernels_smallest_is_refused():
    with pytest.raises(ValueError):
        core_quota.Groups(0.05)


@needs_cgroups
def test_the_relay_rig_holds_exactly_its_relay_processes():
    from bench import workers

    groups = core_quota.Groups(0.4)
    rig = workers.RelayRig(2, groups)
    try:
        held = {g.path: g.members() for g in rig.held}
        assert sorted(m for ms in held.values() for m in ms) == sorted(r.pid for r in rig.relays)
        assert all(len(ms) == 1 for ms in held.values())
        for harness in (rig.loadgen, rig.sink):
            assert not _cpu_cgroup(harness.pid).startswith("/" + core_quota.PREFIX)
    finally:
        rig.close()
        assert groups.close() == []
    assert not any(os.path.exists(p) for p in held)


@needs_cgroups
def test_the_calls_rig_holds_exactly_its_callfork_processes():
    from bench import workers

    groups = core_quota.Groups(0.4)
    rig = workers.CallsRig(2, None, groups)
    try:
        members = [g.members() for g in rig.held]
        assert members == [[c.pid] for c in rig.callfork.children]
        for harness in (rig.app, rig.switch):
            assert not _cpu_cgroup(harness.pid).startswith("/" + core_quota.PREFIX)
    finally:
        rig.close()
        assert groups.close() == []
    assert not any(os.path.exists(g.path) for g in rig.held)
