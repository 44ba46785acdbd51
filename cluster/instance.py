"""Which process holds a node id: an instance token each start of a node draws, with the host (its
name and boot id) and the process (pid and the kernel's start time of that pid), kept in the node's
registrations (Redis: cluster/registry.py; PostgreSQL: records/node_beats.py).

A start whose node id is registered by another instance is refused (`NodeIdTaken`) unless that
instance is provably gone: it ran on this host since its last boot, in this PID namespace (a
container's pids are its own), and its pid no longer runs the same process (the pid is free, or was
reused by a process started at another time). That is what
lets a worker the supervisor restarts 1 s after it died (callfork/workers.py), or a node a service
manager restarts on the same host, take its id back at once, while its dead registration has not
expired yet (node_ttl_s). A holder on another host is never provably gone: its registration must
expire first.
"""
from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass


class NodeIdTaken(OSError):
    """Another live node has registered this node id (an OSError, as a listen address already in
    use is: `callfork serve` exits 1 at start with the message)."""


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    """This process's PID namespace ('pid:[4026531836]'): containers of one host share its boot id (and,
    with host networking, its hostname), but a pid read in another namespace's /proc names another
    process, or none. '' when it cannot be read."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _pid_start(pid: int) -> str:
    """The kernel's start time of process `pid` (field 22 of /proc/<pid>/stat), '' if none runs."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]   # fields after the command name start at field 3


@dataclass(frozen=True)
class Instance:
    token: str
    host: str          # hostname/boot id/PID namespace
    pid: int
    pid_start: str

    @classmethod
    def this_process(cls) -> "Instance":
        pid = os.getpid()
        boot = _boot_id()   # (without it, or the namespace, the host ends in "/": never provably gone)
        host = f"{socket.gethostname()}/{boot}/{_pid_namespace()}" if boot else f"{socket.gethostname()}/"
        return cls(secrets.token_hex(8), host, pid, _pid_start(pid))

    @classmethod
    def from_fields(cls, data: dict) -> "Instance":
        """From a registration's `instance`, `host`, `pid`, `pid_start` (empty token: none)."""
        try:
            pid = int(data.get("pid") or 0)
        except (TypeError, ValueError):
            pid = 0
        return cls(str(data.get("instance") or ""), str(data.get("host") or ""), pid,
                   str(data.get("pid_start") or ""))

    def fields(self) -> dict:
        return {"instance": self.token, "host": self.host, "pid": str(self.pid), "pid_start": self.pid_start}

    def gone(self) -> bool:
        """True when this instance provably no longer runs: on this host since its boot, in this PID
        namespace, and its pid free or running another process."""
        here = Instance.this_process()
        if not self.token or not self.pid or self.host != here.host or not self.host.rpartition("/")[2]:
            return False
        return _pid_start(self.pid) != self.pid_start

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host.partition('/')[0] or 'an unknown host'}"
