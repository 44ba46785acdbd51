"""Holding a benchmark process to a fixed share of a core: a CPU cgroup of its own with a CFS quota.

Owns: finding a writable CPU controller (cgroup v1's `cpu` hierarchy, else a cgroup v2 mount whose
root offers `cpu`), making one group per held process under that mount's root, moving the process
(all its threads) into it by pid, reading the group's throttling counters, and removing the groups
afterwards (`Groups.close`, also run at exit; groups left by a killed run, named with a pid that no
longer exists, are removed by the next run that creates one).

Quota Q (cores) with a 10 ms period: the process may run Q x 10 ms of every 10 ms (v1:
cpu.cfs_period_us = 10000, cpu.cfs_quota_us = Q x 10000; v2: cpu.max = "Q*10000 10000"), so a
saturated process stalls at most (1 - Q) x 10 ms at a time. The kernel's smallest quota is 1 ms:
Q >= 0.1.

Limits:
- it needs write access to the cgroup file system (root, or a delegated v2 subtree mounted as the
  root of a container's cgroup namespace); `available()` says why not otherwise, and callers skip
  their quota mode with that reason (CI machines and users' boxes may not allow it);
- v2: groups are made directly under the mount's root, whose `cgroup.subtree_control` must have or
  take `+cpu`; inside a container whose namespace root holds processes, the kernel refuses that
  (no internal processes) and the mode is skipped;
- a process the held one forks afterwards inherits the group (and shares its quota): `members()`
  shows who is in it;
- the quota caps CPU time, not placement: the held process still competes with the rest of the
  machine for whatever the quota allows it (other load shows up as less than Q when saturated).
"""
from __future__ import annotations

import atexit
import os
import time

PERIOD_US = 10_000
PREFIX = "callfork-bench-"


def _mounts() -> list:
    try:
        with open("/proc/self/mounts") as f:
            return [line.split() for line in f]
    except OSError:
        return []


def _v1_root() -> str | None:
    for m in _mounts():
        if len(m) >= 4 and m[2] == "cgroup" and "cpu" in m[3].split(","):
            return m[1]
    return None


def _v2_root() -> str | None:
    for m in _mounts():
        if len(m) >= 3 and m[2] == "cgroup2":
            try:
                with open(os.path.join(m[1], "cgroup.controllers")) as f:
                    if "cpu" in f.read().split():
                        return m[1]
            except OSError:
                continue
    return None


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Group:
    """One CPU cgroup holding processes to `quota` cores."""

    def __init__(self, kind: str, root: str, name: str, quota: float):
        self.kind, self.root, self.quota = kind, root, quota
        self.path = os.path.join(root, name)
        os.mkdir(self.path)
        try:
            if kind == "v1":   # period first: the new group's quota is -1 (none)
                _write(os.path.join(self.path, "cpu.cfs_period_us"), str(PERIOD_US))
                _write(os.path.join(self.path, "cpu.cfs_quota_us"), str(round(quota * PERIOD_US)))
            else:
                _write(os.path.join(self.path, "cpu.max"), f"{round(quota * PERIOD_US)} {PERIOD_US}")
        except OSError:
            self.remove()
            raise

    def add(self, pid: int) -> None:
        """Move process `pid` (all its threads) into the group."""
        _write(os.path.join(self.path, "cgroup.procs"), str(pid))

    def members(self) -> list:
        """The pids in the group now."""
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def stat(self) -> dict:
        """The group's CFS counters: periods, throttled periods, throttled seconds."""
        out = {}
        try:
            with open(os.path.join(self.path, "cpu.stat")) as f:
                for line in f:
                    k, _, v = line.partition(" ")
                    out[k] = int(v)
        except OSError:
            return {}
        throttled = (out.get("throttled_time", 0) / 1e9 if self.kind == "v1"
                     else out.get("throttled_usec", 0) / 1e6)
        return {"periods": out.get("nr_periods", 0), "throttled": out.get("nr_throttled", 0),
                "throttled_s": throttled}

    def remove(self, timeout: float = 5.0) -> bool:
        """Move whoever is still in the group back to the root group, then remove it (an exiting
        process can stay listed for a moment: retried until `timeout`). False when it stayed."""
        deadline = time.monotonic() + timeout
        while os.path.isdir(self.path):
            for pid in self.members():
                try:
                    _write(os.path.join(self.root, "cgroup.procs"), str(pid))
                except OSError:   # gone meanwhile
                    pass
            try:
                os.rmdir(self.path)
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.02)
        return True


def _controller() -> tuple:
    """(kind, root) of the CPU controller to use, or (None, why not)."""
    v1 = _v1_root()
    if v1 is not None:
        return "v1", v1
    v2 = _v2_root()
    if v2 is None:
        return None, "no cgroup v1 cpu hierarchy and no cgroup v2 mount offering the cpu controller"
    try:
        with open(os.path.join(v2, "cgroup.subtree_control")) as f:
            enabled = "cpu" in f.read().split()
        if not enabled:
            _write(os.path.join(v2, "cgroup.subtree_control"), "+cpu")
    except OSError as exc:
        return None, f"cgroup v2 at {v2}: cannot enable the cpu controller for its children ({exc})"
    return "v2", v2


def _sweep(root: str) -> None:
    """Remove groups of ours left by runs that were killed (their owner pid is gone)."""
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        if not name.startswith(PREFIX):
            continue
        owner = name[len(PREFIX):].split("-", 1)[0]
        if owner.isdigit() and not _pid_alive(int(owner)):
            try:
                os.rmdir(os.path.join(root, name))
            except OSError:   # not empty (a process of that run lives on): left alone
                pass


def available() -> tuple:
    """(True, "cgroup v1 at /sys/fs/cgroup/cpu") when a group with a quota can be made here (tried:
    made and removed), else (False, why not)."""
    kind, root = _controller()
    if kind is None:
        return False, root
    try:
        Group(kind, root, f"{PREFIX}{os.getpid()}-probe", 0.5).remove()
    except OSError as exc:
        return False, f"cgroup {kind} at {root} is not writable here ({exc.strerror or exc})"
    return True, f"cgroup {kind} at {root}"


class Groups:
    """The groups of one benchmark run: `hold(pid, name)` puts a process in a new group at `quota`
    cores; `close()` removes them all (also at interpreter exit, if the run did not)."""

    def __init__(self, quota: float):
        if not 0.1 <= quota <= (os.cpu_count() or 1):
            raise ValueError(f"quota {quota} cores: must be within 0.1 .. {os.cpu_count()}")
        kind, root = _controller()
        if kind is None:
            raise OSError(root)
        self.kind, self.root, self.quota = kind, root, quota
        self.groups: list = []
        self.n = 0
        _sweep(root)
        atexit.register(self.close)

    def hold(self, pid: int, name: str) -> Group:
        self.n += 1
        g = Group(self.kind, self.root, f"{PREFIX}{os.getpid()}-{self.n}-{name}", self.quota)
        self.groups.append(g)
        g.add(pid)
        return g

    def release(self, group: Group) -> None:
        group.remove()
        if group in self.groups:
            self.groups.remove(group)

    def close(self) -> list:
        """Remove every group; the paths that could not be removed."""
        left = [g.path for g in self.groups if not g.remove()]
        self.groups = []
        return left
