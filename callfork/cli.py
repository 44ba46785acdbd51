"""The `callfork` command line: `serve`, `validate`, `sim serve|call`, `demo`, and the ops commands.

`main()` is the entry point: it patches the standard library for gevent before anything else is
imported (greenswitch, urllib3, sqlite3 users and threading must see the patched modules), which
is why this module imports nothing else at its top. No other module patches on import. Each
subcommand imports what it needs lazily, so `callfork validate` does not start a service and
`callfork sim` does not import the service at all.
"""
import argparse
import logging
import sys

OPS_COMMANDS = ("calls", "call", "streams", "hangup", "stop-stream", "tail", "webhooks", "retry-webhooks", "drain")


def _serve(args) -> int:
    from .serve import run_service

    return run_service(config_path=args.config, workers=getattr(args, "workers", None))


def _validate(args) -> int:
    from verbs import validate_source

    code, text = validate_source(args.source, api=args.api)
    print(text)
    return code


def _sim(args, rest) -> int:
    from switch_sim import call_main, serve_main

    if args.sim_command == "serve":
        return serve_main(rest) or 0
    return call_main(rest) or 0


def _demo(args) -> int:
    from .demo import run_demo

    return run_demo(args)


def _ops(args, rest) -> int:
    from .ops_cli import ops_main

    return ops_main(args.command, rest, config_path=args.config)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="callfork",
        description="Self-hosted call control for FreeSWITCH: Vobiz XML and SWML apps, live audio "
                    "streams to WebSockets, durable webhooks.")
    p.add_argument("--config", help="path to callfork.toml (default: $CALLFORK_CONFIG, else built-in loopback defaults)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser(
        "serve", help="run the service next to FreeSWITCH (outbound ESL server, relay, HTTP API)",
        description="Run callfork: the outbound ESL server FreeSWITCH's `socket` app connects to, the "
                    "control connection to FreeSWITCH's event socket (reconnects by itself), the audio "
                    "relay, the durable webhook outbox and the HTTP API. Stop it with Ctrl-C or SIGTERM. "
                    "With a config file ([[numbers]] say which app answers which number) each key can be "
                    "overridden by CALLFORK_<SECTION>_<KEY>. Without one (no --config, no $CALLFORK_CONFIG) "
                    "it uses the loopback defaults (event socket 127.0.0.1:8021, socket app 127.0.0.1:8084, "
                    "HTTP 127.0.0.1:8080, data in ./var) and answers every number with the built-in "
                    "sample app. Without [server] auth_token, a token is generated on first start, "
                    "printed once and kept in data_dir/auth_token.")
    serve.add_argument("--config", default=argparse.SUPPRESS, help="path to callfork.toml")
    serve.add_argument("--workers", type=_positive, default=argparse.SUPPRESS, metavar="N",
                       help="worker processes (default: [server] workers, 1): a supervisor runs N workers "
                            "sharing the socket app and HTTP ports (SO_REUSEPORT), restarts any that dies; "
                            "more than 1 needs [cluster] redis_url and [store] postgres_dsn")
    v = sub.add_parser("validate", help="check a Vobiz XML, SWML or (--api twilio) TwiML document: errors with "
                                        "line:column, exit 1; or a summary, exit 0",
                       description="Parse a Vobiz XML or SWML document (or, with --api twilio, a TwiML "
                                   "document) the way a call would. Prints a summary of the verbs and "
                                   "exits 0, or prints every error with line:column and exits 1.")
    v.add_argument("source", help="a file path, or an http(s) URL to fetch")
    v.add_argument("--api", choices=("vobiz", "twilio"), default="vobiz",
                   help="the API of the number's app: vobiz (the default: Vobiz XML or SWML, by content "
                        "type, then by sniffing) or twilio (TwiML, whatever the content type)")
    s = sub.add_parser("sim", help="the built-in FreeSWITCH simulator (`callfork sim serve --help`, `callfork sim call --help`)")
    s.add_argument("sim_command", choices=("serve", "call"))
    d = sub.add_parser("demo", help="simulator + service + sample app + one call, no FreeSWITCH and no internet needed",
                       description="Start the FreeSWITCH simulator, callfork and the sample app on free "
                                   "loopback ports, place one simulated call (Speak, a session Record, "
                                   "a bidirectional Stream to an echo bot, Speak) and print what happened: "
                                   "the stream events, the recording and every webhook. Exit 0 when the "
                                   "call was answered, streamed and its hangup webhook delivered. The "
                                   "recording and what the caller heard are kept in a directory it prints.")
    d.add_argument("--keep-data", action="store_true",
                   help="keep the whole data directory (database, recordings) instead of only the audio files")
    d.add_argument("--audio", help="WAV the simulated caller speaks (default: a generated one)")
    for name, text in (("calls", "list live calls (--all: ended ones too)"), ("call", "one call's timeline: verbs, events, streams, recordings, webhooks"),
                       ("streams", "list live streams"), ("hangup", "hang up a call"),
                       ("stop-stream", "stop one stream or all streams of a call"), ("tail", "follow the live event feed"),
                       ("webhooks", "list the webhooks not delivered yet (waiting, held, failed) and the queue"),
                       ("retry-webhooks", "queue failed webhooks again (all, or one call's)"),
                       ("drain", "stop taking new calls, let the live ones finish, then exit")):
        sub.add_parser(name, help=text, add_help=False)
    return p


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return value


def _split_global(argv):
    """Global options (--config, -v) may stand before the command; everything after it is the command's."""
    globals_, i = [], 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] not in ("-h", "--help"):
        takes_value = argv[i] == "--config"
        globals_.extend(argv[i:i + 1 + takes_value])
        i += 1 + takes_value
    return globals_, argv[i:]


def main(argv=None) -> int:
    from gevent import monkey
    monkey.patch_all()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    globals_, rest = _split_global(argv)
    command = rest[0] if rest else None
    if command == "sim" or command in OPS_COMMANDS:
        # these subcommands own their whole argument list (and their --help)
        args = parser.parse_args(globals_ or [])
        _setup_logging(args.verbose)
        args.command = command
        if command in OPS_COMMANDS:
            return _ops(args, rest[1:])
        if len(rest) < 2 or rest[1] not in ("serve", "call"):
            print("usage: callfork sim {serve,call} [--help]", file=sys.stderr)
            return 2
        args.sim_command = rest[1]
        return _sim(args, rest[2:])
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    if args.command is None:
        parser.print_help()
        return 2
    handler = {"serve": _serve, "validate": _validate, "demo": _demo}[args.command]
    from esl_app import ConfigError

    try:
        return handler(args)
    except ConfigError as exc:
        print(f"callfork {args.command}: {exc}", file=sys.stderr)
        return 1


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":
    sys.exit(main())
