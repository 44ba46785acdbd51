"""`callfork serve --workers N` (`[server] workers`): a supervisor process and N worker processes on one
FreeSWITCH, so that every core carries calls.

Each worker is a whole service (callfork/service.py: its own calls, streams, relay, control
connection, outbound socket server, webhook outbox) and a cluster node whose id is
`<node_id>-w<i>` (`[cluster] node_id`, else `<hostname>-<supervisor pid>`). What they share:

- the socket app port (`outbound_listen`) and the HTTP port (`http_listen`), bound by every worker
  with SO_REUSEPORT: the kernel hands each new connection (a call from FreeSWITCH's `socket` app, a
  REST request) to one of them;
- the [cluster] Redis and the [store] PostgreSQL (required when N > 1: the registry that tells which
  worker owns a call, REST requests carried to it, the records and the webhook outbox);
- data_dir (recordings, media) and the auth token, which the supervisor settles before the workers
  start (a generated one would otherwise race).

What each has of its own: its relay, on `relay_listen`'s port + i (or an ephemeral port when that is 0);
the fork URL a worker gives mod_audio_fork names its relay's port (audio_fork/relay.py `url_for`), so
a call's streams reach the worker that runs the call. And a private HTTP listener on an ephemeral
port of http_listen's host, which is its `[cluster] advertise_url`: a REST request carried to a call's
owner must reach that worker, not whichever one the shared port picks.

The supervisor starts the workers as `python -m callfork.workers`, restarts one that dies (after
1 s, doubling to 30 s while it keeps dying within a minute of its start), forwards SIGTERM/SIGINT to
them and exits when all have stopped. Draining (callfork/drain.py) is the whole set's: FreeSWITCH's
pause is switch-wide. A worker that exits 0 by itself has drained (`callfork drain` reached it
through the shared port): it is not restarted, the others are told to drain too (SIGUSR1, which
also drains a worker sent it directly, and which the supervisor forwards to all), and the
supervisor exits 0 once the last has finished its calls. A worker that fails its first start with an error exit (a
port taken, a bad config) stops them all: restarting it would fail the same way. Workers end with
the supervisor (PR_SET_PDEATHSIG), even when it is killed. With N = 1 none of this runs:
`callfork serve` is one process (callfork/serve.py).
"""
from __future__ import annotations

import argparse
import ctypes
import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import time

from esl_app import ConfigError

log = logging.getLogger("callfork.workers")

FIRST_START_GRACE_S = 10.0   # an error exit this soon after a worker's first start stops them all
RESTART_MIN_S, RESTART_MAX_S = 1.0, 30.0
STABLE_S = 60.0              # a worker up this long restarts after RESTART_MIN_S again
STOP_TIMEOUT_S = 30.0        # after SIGTERM, workers still running are killed
POLL_S = 0.2


def check_cluster_config(config) -> None:
    """More than one worker needs the servers they share (ConfigError, said before anything starts)."""
    missing = [name for name, value in (("[cluster] redis_url", config.cluster.redis_url),
                                        ("[store] postgres_dsn", config.store.postgres_dsn)) if not value]
    if config.server.workers > 1 and missing:
        raise ConfigError(f"--workers {config.server.workers} ([server] workers) needs {' and '.join(missing)}: "
                          "the workers share the call registry (Redis) and the records and webhook outbox "
                          "(PostgreSQL); set them, or run one worker")


def base_node_id(config) -> str:
    return config.cluster.node_id or f"{socket.gethostname()}-{os.getpid()}"


def worker_config(config, index: int, node_id: str, advertise_url: str):
    """The config worker `index` runs with: its node id, its relay port, its advertise_url."""
    host, port = config.server.relay_address
    relay_host = f"[{host}]" if ":" in host else host
    server = dataclasses.replace(config.server, relay_listen=f"{relay_host}:{port + index if port else 0}")
    cluster = dataclasses.replace(config.cluster, node_id=f"{node_id}-w{index}", advertise_url=advertise_url)
    return dataclasses.replace(config, server=server, cluster=cluster)


def private_http_listener(config):
    """(a listening socket on an ephemeral port of http_listen's host, the URL other nodes reach it at)."""
    host, _port = config.server.http_address
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    if config.cluster.advertise_url:   # the address the operator gave, with this worker's port
        from urllib.parse import urlsplit
        advertised = urlsplit(config.cluster.advertise_url)
        name = advertised.hostname or "127.0.0.1"
        scheme = advertised.scheme or "http"
    else:
        name, scheme = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host), "http"
    name = f"[{name}]" if ":" in name else name
    return sock, f"{scheme}://{name}:{port}"


# -- the supervisor -------------------------------------------------------------------------------------

class Worker:
    """One worker process, as the supervisor sees it."""

    def __init__(self, index: int, argv: list, env: dict):
        self.index, self.argv, self.env = index, argv, env
        self.proc = None
        self.started_at = 0.0
        self.starts = 0
        self.restart_at = None
        self.delay = RESTART_MIN_S
        self.finished = False   # exited 0 by itself (drained): not restarted

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, preexec_fn=_die_with_parent)
        self.started_at = time.monotonic()
        self.starts += 1
        self.restart_at = None
        log.info("worker %d started (pid %d)", self.index, self.proc.pid)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _die_with_parent() -> None:
    """In the worker, before exec: SIGTERM when the supervisor dies (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass   # not Linux: a killed supervisor leaves its workers to be stopped by hand


class Supervisor:
    def __init__(self, workers: list):
        self.workers = workers
        self.stopping = False
        self.draining = False
        self.code = 0

    def stop(self, *_args) -> None:
        self.stopping = True

    def drain(self, *_args) -> None:
        """Every running worker drains (SIGUSR1); once all have exited, so does the supervisor."""
        if not self.draining:
            log.warning("draining every worker")
        self.draining = True
        for w in self.workers:
            if w.running:
                w.proc.send_signal(signal.SIGUSR1)

    def run(self) -> int:
        import gevent

        for sig in (signal.SIGINT, signal.SIGTERM):
            gevent.signal_handler(sig, self.stop)
        gevent.signal_handler(signal.SIGUSR1, self.drain)
        for w in self.workers:
            w.start()
        while not self.stopping:
            gevent.sleep(POLL_S)
            for w in self.workers:
                self._tend(w)
            if all(w.finished for w in self.workers):
                log.info("every worker drained and exited")
                return 0
        self._stop_all()
        return self.code

    def _tend(self, w: Worker) -> None:
        now = time.monotonic()
        if w.finished:
            return
        if w.restart_at is not None:
            if now >= w.restart_at:
                w.start()
            return
        code = w.proc.poll()
        if code is None or self.stopping:
            return
        uptime = now - w.started_at
        if code == 0 or self.draining:
            log.info("worker %d (pid %d) drained and exited", w.index, w.proc.pid)
            w.finished = True
            self.drain()   # FreeSWITCH is paused for all of them: the others finish their calls and exit too
            return
        if w.starts == 1 and code > 0 and uptime < FIRST_START_GRACE_S:
            log.error("worker %d (pid %d) could not start (exit %d): stopping all workers",
                      w.index, w.proc.pid, code)
            self.code, self.stopping = 1, True
            return
        if uptime >= STABLE_S:
            w.delay = RESTART_MIN_S
        how = f"signal {-code}" if code < 0 else f"exit {code}"
        log.error("worker %d (pid %d) died (%s) after %.1f s: restarting it in %.0f s",
                  w.index, w.proc.pid, how, uptime, w.delay)
        w.restart_at = now + w.delay
        w.delay = min(RESTART_MAX_S, w.delay * 2)   # the next time, if it dies again soon

    def _stop_all(self) -> None:
        import gevent

        for w in self.workers:
            if w.running:
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(w.running for w in self.workers) and time.monotonic() < deadline:
            gevent.sleep(POLL_S)
        for w in self.workers:
            if w.running:
                log.error("worker %d (pid %d) did not stop in %.0f s: killing it", w.index, w.proc.pid,
                          STOP_TIMEOUT_S)
                w.proc.kill()
                w.proc.wait()
        log.info("all workers stopped")


def supervise(config, config_path: str | None, env) -> int:
    """`callfork serve` with more than one worker: settle what the workers share, run them until
    SIGTERM/SIGINT (restarting any that dies), and return the exit code."""
    from .data_dir import private_dir
    from .service import Service

    check_cluster_config(config)
    n = config.server.workers
    probe = Service(config)
    private_dir(probe.data_dir)
    token = probe._auth_token()   # the configured one, or the one kept in (or generated into) data_dir
    node_id = base_node_id(config)
    child_env = dict(env, CALLFORK_SERVER_AUTH_TOKEN=token)
    workers = []
    for i in range(n):
        argv = [sys.executable, "-m", "callfork.workers", "--index", str(i), "--workers", str(n),
                "--node-id", node_id]
        if config_path:
            argv += ["--config", config_path]
        workers.append(Worker(i, argv, child_env))
    print(f"callfork: supervisor (pid {os.getpid()}) runs {n} workers, nodes {node_id}-w0..{node_id}-w{n - 1}, "
          f"sharing the socket app port {config.server.outbound_listen} and HTTP {config.server.http_listen}",
          flush=True)
    return Supervisor(workers).run()


# -- a worker ----------------------------------------------------------------------------------------

def worker_main(argv=None) -> int:
    """`python -m callfork.workers --index I --workers N --node-id ID [--config PATH]`: one worker,
    started by the supervisor."""
    from gevent import monkey

    monkey.patch_all()
    p = argparse.ArgumentParser(prog="python -m callfork.workers")
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--node-id", required=True)
    p.add_argument("--config", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s %(levelname)s [w{args.index}] %(name)s: %(message)s")
    from esl_app import load_config

    from .http_api import create_app
    from .http_server import HttpServer
    from .serve import serve_config

    try:
        config = load_config(args.config)
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, workers=args.workers))
        check_cluster_config(config)
        listener, advertise_url = private_http_listener(config)
    except (ConfigError, OSError) as exc:
        print(f"callfork worker {args.index}: {exc}", file=sys.stderr, flush=True)
        return 1
    config = worker_config(config, args.index, args.node_id, advertise_url)
    private = []

    def started(service) -> None:
        s = config.server
        http = HttpServer(listener, create_app(service), max_connections=s.http_max_connections,
                          idle_timeout_s=s.http_idle_timeout_s, max_body_bytes=s.http_max_body_bytes,
                          fd_reserve=s.fd_reserve)
        http.start()
        private.append(http)
        import gevent
        gevent.signal_handler(signal.SIGUSR1, service.drain.start)   # the supervisor drains the whole set
        log.info("worker %d is node %s: relay %s:%s, its own HTTP %s", args.index, config.cluster.node_id,
                 *service.relay.address, advertise_url)

    try:
        return serve_config(config, started=started)
    finally:
        for http in private:
            http.stop()


if __name__ == "__main__":
    sys.exit(worker_main())
