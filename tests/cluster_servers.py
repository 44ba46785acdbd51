"""Real Redis and PostgreSQL servers for the cluster tests, each started by the test on a free loopback
port in a temporary directory and stopped after it (Debian's `redis-server` and PostgreSQL 15, which
.ci/run installs). A test that needs one and cannot find the binaries fails with that said, rather
than skipping: CI installs them.

    with RedisServer() as redis, PostgresServer() as pg:
        redis.url   # redis://127.0.0.1:PORT/0
        pg.dsn      # postgresql://callfork@127.0.0.1:PORT/callfork
        redis.restart(); pg.stop(); pg.start()   # the same port and data, for outage tests
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from free_ports import free_port
from waiting import wait_until

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin")




def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _binary(name: str, dirs=("/usr/bin", "/usr/sbin", "/usr/local/bin")) -> str:
    for directory in dirs:
        path = Path(directory) / name
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: install it (.ci/run does: apt-get install redis-server postgresql)")
    return found


class RedisServer:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="callfork-redis-"))
        self.port = free_port()
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen(
            [_binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--save", "", "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: _answers(self.port), 10, "redis-server listening")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    """One PostgreSQL cluster (initdb into a temporary directory, trust auth on loopback), with a
    database and a user both named `callfork`."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="callfork-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.proc = None
        self._initialised = False

    @property
    def dsn(self) -> str:
        return f"postgresql://callfork@127.0.0.1:{self.port}/callfork"

    def _run(self, *args) -> None:
        subprocess.run(list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       env=self._env())

    def _env(self) -> dict:
        return {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}

    def _as_postgres(self):
        """initdb and postgres refuse to run as root: drop to `nobody` when we are root."""
        if os.geteuid() != 0:
            return None
        import pwd
        user = pwd.getpwnam("nobody")
        os.chown(self.dir, user.pw_uid, user.pw_gid)

        def demote():
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
        return demote

    def start(self) -> "PostgresServer":
        demote = self._as_postgres()
        if not self._initialised:
            subprocess.run([_binary("initdb", PG_BIN_DIRS), "-D", str(self.data), "-U", "callfork", "-A", "trust",
                            "-E", "UTF8", "--no-sync"], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, env=self._env(), preexec_fn=demote)
            self._initialised = True
        self.proc = subprocess.Popen(
            [_binary("postgres", PG_BIN_DIRS), "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
             "-k", str(self.dir), "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self._env(), preexec_fn=demote)
        wait_until(lambda: _answers(self.port), 20, "postgres listening")
        wait_until(self._ready, 20, "postgres accepting queries")
        return self

    def _ready(self) -> bool:
        import pg8000.native
        try:
            conn = pg8000.native.Connection("callfork", host="127.0.0.1", port=self.port, database="postgres",
                                            timeout=2)
        except Exception:
            return False
        try:
            if not conn.run("SELECT 1 FROM pg_database WHERE datname = 'callfork'"):
                conn.run("CREATE DATABASE callfork")
            return True
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)     # fast shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_gone(port: int, timeout: float = 10.0) -> None:
    wait_until(lambda: not _answers(port), timeout, f"nothing listening on port {port}", interval=0.05)
