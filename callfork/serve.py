"""`callfork serve`: load the configuration (or, without a file, answer every number with the
built-in sample app), start the Service, freeze its start-up heap, and run until SIGINT/SIGTERM.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys

import gevent
import gevent.event

from esl_app import NumberConfig, load_config

from .service import Service, freeze_startup_heap

log = logging.getLogger("callfork.service")


def run_service(config_path: str | None = None, env=None) -> int:
    """`callfork serve`. Without a config file (no --config, no $CALLFORK_CONFIG) the loopback
    defaults apply and every number is answered by the built-in sample application, started
    in-process on a free loopback port (README, Configuration). Once the service runs, its start-up heap is
    frozen (`freeze_startup_heap`)."""
    env = os.environ if env is None else env
    config = load_config(config_path, env=env)
    sample = None
    if config.source is None:
        from .demo_app import SampleApp

        sample = SampleApp().start()
        config = dataclasses.replace(config, numbers=[NumberConfig(
            number="*", answer_url=sample.answer_url, hangup_url=sample.hangup_url)])
        print(f"callfork: no config file (--config or CALLFORK_CONFIG): loopback defaults, and every number "
              f"is answered by the built-in sample app at {sample.answer_url} "
              f"(echo bot at {sample.ws_url}/echo)", flush=True)
    try:
        service = Service(config).start()
    except OSError as exc:
        if sample is not None:
            sample.stop()
        print(f"callfork serve: cannot start: {exc} (is another callfork running? the listen addresses are "
              f"[server] outbound_listen, http_listen, relay_listen)", file=sys.stderr, flush=True)
        return 1
    freeze_startup_heap()
    fs = config.freeswitch
    print(f"callfork: HTTP API http://{service.http.address[0]}:{service.http.address[1]} "
          f"(auth id {config.server.auth_id}), FreeSWITCH socket app -> "
          f"{service.outbound.address[0]}:{service.outbound.address[1]}, event socket "
          f"{fs.esl_host}:{fs.esl_port}, data in {service.data_dir.resolve()}", flush=True)
    stop = gevent.event.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, stop.set)
    stop.wait()
    log.info("stopping")
    service.stop()
    if sample is not None:
        sample.stop()
    return 0
