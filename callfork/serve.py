"""`callfork serve`: load the configuration (or, without a file, answer every number with the
built-in sample app), raise the soft limit of open files to the hard one, start the Service, freeze
its start-up heap, and run until SIGINT/SIGTERM.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import resource
import signal
import sys

import gevent
import gevent.event

from esl_app import NumberConfig, load_config

from .service import Service, freeze_startup_heap

log = logging.getLogger("callfork.service")


def raise_fd_limit() -> None:
    """The soft RLIMIT_NOFILE up to the hard one (as Go's runtime does): the soft limit is often 1024
    while the hard one allows far more, and every call, stream and HTTP connection holds a descriptor.
    (callfork uses no select(); gevent's loop and the unpatched poll have no 1024 bound.)"""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        log.info("open files limit raised from %d to %d", soft, target)
    except (ValueError, OSError) as exc:
        log.warning("open files limit stays at %d (could not raise it to %d: %s)", soft, target, exc)


def run_service(config_path: str | None = None, env=None, workers: int | None = None) -> int:
    """`callfork serve`. Without a config file (no --config, no $CALLFORK_CONFIG) the loopback
    defaults apply and every number is answered by the built-in sample application, started
    in-process on a free loopback port (README, Configuration). Once the service runs, its start-up heap is
    frozen (`freeze_startup_heap`). `workers` (`--workers`, else `[server] workers`) above 1: a
    supervisor runs that many worker processes instead (callfork/workers.py)."""
    env = os.environ if env is None else env
    config = load_config(config_path, env=env)
    if workers is not None:
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, workers=workers))
    if config.server.workers > 1:
        from .workers import supervise

        return supervise(config, config_path, env)
    return serve_config(config)


def serve_config(config, started=None) -> int:
    """Run the service on `config` until SIGINT/SIGTERM; `started(service)` is called once it runs."""
    sample = None
    if config.source is None:
        from .demo_app import SampleApp

        sample = SampleApp().start()
        config = dataclasses.replace(config, numbers=[NumberConfig(
            number="*", answer_url=sample.answer_url, hangup_url=sample.hangup_url)])
        print(f"callfork: no config file (--config or CALLFORK_CONFIG): loopback defaults, and every number "
              f"is answered by the built-in sample app at {sample.answer_url} "
              f"(echo bot at {sample.ws_url}/echo)", flush=True)
    raise_fd_limit()
    try:
        service = Service(config).start()
    except OSError as exc:
        if sample is not None:
            sample.stop()
        print(f"callfork serve: cannot start: {exc} (is another callfork running? the listen addresses are "
              f"[server] outbound_listen, http_listen, relay_listen)", file=sys.stderr, flush=True)
        return 1
    if started is not None:
        started(service)
    freeze_startup_heap()
    fs = config.freeswitch
    print(f"callfork: HTTP API http://{service.http.address[0]}:{service.http.address[1]} "
          f"(auth id {config.server.auth_id}), FreeSWITCH socket app -> "
          f"{service.outbound.address[0]}:{service.outbound.address[1]}, event socket "
          f"{fs.esl_host}:{fs.esl_port}, data in {service.data_dir.resolve()}", flush=True)
    stop = gevent.event.Event()
    service.drain.on_drained = stop.set   # `callfork drain`: exit once the last call has ended
    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, stop.set)
    stop.wait()
    log.info("stopping")
    service.stop()
    if sample is not None:
        sample.stop()
    return 0
