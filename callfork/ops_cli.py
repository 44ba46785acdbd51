"""The ops commands: `callfork calls | call UUID | streams | hangup UUID | stop-stream UUID [ID] | tail [UUID] |
webhooks | retry-webhooks [UUID] | drain [--wait]`.

They talk to a running service through its HTTP API only (README, The command line), with the credentials from
the same config the service reads (`[server] http_listen`, `auth_id`, `auth_token`, or the token
the service generated into `data_dir/auth_token`). Output is readable tables (rich); `--json`
prints the API's JSON for scripts. When the service is not running, the error says how to start it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import requests
from rich.console import Console
from rich.table import Table

from esl_app import ConfigError, load_config

console = Console()


class OpsError(Exception):
    pass


class ApiClient:
    def __init__(self, config_path=None, base_url=None):
        config = load_config(config_path)
        host, _, port = config.server.http_listen.rpartition(":")
        if host in ("0.0.0.0", "::", "[::]", ""):
            host = "127.0.0.1"
        self.base = base_url or f"http://{host}:{port}"
        self.auth_id = config.server.auth_id
        token = config.server.auth_token
        token_file = Path(config.server.data_dir) / "auth_token"
        if not token and token_file.exists():
            token = token_file.read_text().strip()
        self.token = token
        self.account = f"{self.base}/api/v1/Account/{self.auth_id}"

    def request(self, method: str, path: str, *, stream: bool = False, **kw):
        url = path if path.startswith("http") else self.account + path
        headers = {"X-Auth-ID": self.auth_id, "X-Auth-Token": self.token}
        try:
            resp = requests.request(method, url, headers=headers, timeout=None if stream else 10,
                                    stream=stream, **kw)
        except requests.ConnectionError:
            raise OpsError(f"callfork is not running at {self.base}: start it with `callfork serve` "
                           f"(or `callfork --config callfork.toml serve`), or point --config / --url at "
                           f"the service you mean") from None
        except requests.Timeout:
            raise OpsError(f"callfork at {self.base} did not answer in 10 s") from None
        if resp.status_code == 401:
            raise OpsError("the API refused the credentials: check [server] auth_id / auth_token "
                           "(or data_dir/auth_token) in the config the service runs with")
        if resp.status_code >= 400:
            try:
                message = resp.json().get("error", resp.text)
            except ValueError:
                message = resp.text
            raise OpsError(f"HTTP {resp.status_code}: {message}")
        return resp


def _when(epoch) -> str:
    if not isinstance(epoch, (int, float)):
        return "" if epoch is None else str(epoch)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _table(title: str, columns, rows) -> Table:
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    return table


def cmd_calls(api: ApiClient, args) -> None:
    data = api.request("GET", "/Call/", params={"status": "all" if args.all else "live", "limit": args.limit}).json()
    if args.json:
        print(json.dumps(data, indent=2))
        return
    rows = [(c.get("uuid"), c.get("direction"), c.get("from_number"), c.get("to_number"), c.get("status"),
             _when(c.get("start_time")), c.get("hangup_cause_name") or "") for c in data.get("objects", [])]
    columns = ("uuid", "dir", "from", "to", "status", "started", "ended as")
    if any("node" in c for c in data.get("objects", [])):   # a cluster: every node's calls, with their node
        rows = [row + (c.get("node"),) for row, c in zip(rows, data["objects"])]
        columns += ("node",)
    console.print(_table("calls" + (" (live and ended)" if args.all else " (live)"), columns, rows))


def cmd_call(api: ApiClient, args) -> None:
    data = api.request("GET", f"/Call/{args.uuid}/Timeline/").json()
    if args.json:
        print(json.dumps(data, indent=2))
        return
    call = data["call"]
    console.print(f"[bold]call {call.get('uuid')}[/bold]  {call.get('from_number')} → {call.get('to_number')}  "
                  f"{call.get('status')}  {call.get('hangup_cause_code') or ''} {call.get('hangup_cause_name') or ''}")
    if call.get("error"):
        console.print(f"[red]error:[/red] {call['error']}")
    console.print(_table("timeline", ("time", "what", "detail"),
                         [(_when(e.get("ts")), e.get("kind"), json.dumps(e.get("detail"))) for e in data["timeline"]]))
    if data["streams"]:
        console.print(_table("streams", ("stream_id", "url", "track", "status", "error"),
                             [(s.get("stream_id"), s.get("service_url"), s.get("audio_track"), s.get("status"),
                               s.get("error")) for s in data["streams"]]))
    if data["recordings"]:
        console.print(_table("recordings", ("recording_id", "format", "duration ms", "end reason", "path"),
                             [(r.get("recording_id"), r.get("format"), r.get("duration_ms"), r.get("end_reason"),
                               r.get("path")) for r in data["recordings"]]))
    console.print(_table("webhooks", ("event", "url", "status", "attempts", "HTTP", "error"),
                         [(w.get("event"), w.get("url"), w.get("status"), w.get("attempts"),
                           w.get("last_status_code"), w.get("last_error")) for w in data["webhooks"]]))


def cmd_streams(api: ApiClient, args) -> None:
    calls = api.request("GET", "/Call/", params={"status": "live", "limit": 100}).json().get("objects", [])
    streams = []
    for call in calls:
        streams += api.request("GET", f"/Call/{call['uuid']}/Stream/").json().get("objects", [])
    live = [s for s in streams if args.all or s.get("status") == "in-progress"]
    if args.json:
        print(json.dumps(live, indent=2))
        return
    console.print(_table("streams", ("call", "stream_id", "url", "track", "bidi", "status"),
                         [(s.get("call_uuid"), s.get("stream_id"), s.get("service_url"), s.get("audio_track"),
                           s.get("bidirectional"), s.get("status")) for s in live]))


def cmd_hangup(api: ApiClient, args) -> None:
    api.request("DELETE", f"/Call/{args.uuid}/")
    print(f"hung up {args.uuid}")


def cmd_stop_stream(api: ApiClient, args) -> None:
    path = f"/Call/{args.uuid}/Stream/" + (f"{args.stream_id}/" if args.stream_id else "")
    api.request("DELETE", path)
    print(f"stopped {'stream ' + args.stream_id if args.stream_id else 'all streams'} of {args.uuid}")


def cmd_tail(api: ApiClient, args) -> None:
    resp = api.request("GET", "/Events/", stream=True,
                       params={"call_uuid": args.uuid} if args.uuid else None)
    # on stderr, so that stdout stays one event a line; once it shows, every later event reaches us
    print(f"following the events of {'call ' + args.uuid if args.uuid else 'every call'} (Ctrl-C to stop)",
          file=sys.stderr, flush=True)
    try:
        for line in resp.iter_lines(decode_unicode=True):
            if not line or not line.startswith("data: "):
                continue
            item = json.loads(line[6:])
            if args.json:
                print(json.dumps(item), flush=True)
            else:
                console.print(f"{item['time']}  {item['call_uuid']}  [bold]{item['kind']}[/bold]  "
                              f"{json.dumps(item['detail'])}")
    except KeyboardInterrupt:
        pass


def _age(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return ""
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def cmd_webhooks(api: ApiClient, args) -> None:
    params = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    if args.call:
        params["call_uuid"] = args.call
    data = api.request("GET", "/Webhooks/", params=params).json()
    if args.json:
        print(json.dumps(data, indent=2))
        return
    summary = data["summary"]
    console.print(f"waiting {summary['depth']} (oldest {_age(summary['oldest_pending_age_s'])}), "
                  f"held {summary['held']}, failed {summary['failed']}"
                  + (f", [red]kept in memory {summary['unsaved']} (the database refuses writes)[/red]"
                     if summary["unsaved"] else "")
                  + (f", [red]lost {summary['lost']}[/red]" if summary["lost"] else ""))
    for host, down in summary["hosts_down"].items():
        console.print(f"[yellow]receiver {host} is down[/yellow]: {down['failed_rounds']} failed round(s) in a row, "
                      f"next try in {down['next_try_in_s']:.0f} s")
    for host, count in summary["failed_by_host"].items():
        console.print(f"failed for {host}: {count}")
    now = time.time()
    rows = [(w.get("id"), w.get("call_uuid"), w.get("event"), w.get("url"), w.get("status"), w.get("attempts"),
             _age(now - w["created_at"]) if w.get("created_at") else "", w.get("last_status_code"),
             w.get("last_error")) for w in data["objects"]]
    console.print(_table("webhooks" + (f" ({args.status})" if args.status else " not delivered"),
                         ("#", "call", "event", "url", "status", "attempts", "age", "HTTP", "error"), rows))


def cmd_retry_webhooks(api: ApiClient, args) -> None:
    body = {"call_uuid": args.uuid} if args.uuid else {}
    if args.skip_failed:
        body["skip_failed"] = True
    data = api.request("POST", "/Webhooks/Retry/", json=body).json()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(data["message"])


def cmd_drain(api: ApiClient, args) -> None:
    data = api.request("POST", f"{api.base}/api/v1/ops/drain").json()
    if args.json:
        print(json.dumps(data, indent=2), flush=True)
    else:
        print(data["message"] + ("" if data["freeswitch_paused"] else
                                 " (FreeSWITCH not paused yet: " + (data["pause_error"] or "asking it") + ")"),
              flush=True)
    if not args.wait:
        return
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    last = None
    while deadline is None or time.monotonic() < deadline:
        try:   # /healthz answers 503 with the drain's state until the process has exited
            live = requests.get(f"{api.base}/healthz", timeout=5).json().get("drain", {}).get("live_calls")
        except (requests.ConnectionError, requests.Timeout, ValueError):
            print("drained: callfork has exited", flush=True)
            return
        if live != last and not args.json:
            print(f"{live} live call(s)", flush=True)
        last = live
        time.sleep(1)
    raise OpsError(f"still draining after {args.timeout:g} s ({last} live call(s))")


COMMANDS = {
    "calls": (cmd_calls, "List the calls callfork is running now (--all: also ended calls, newest first); "
                         "in a cluster ([cluster] redis_url) every node's live calls, with the node of each."),
    "call": (cmd_call, "One call's record: its timeline (verbs, events, errors), streams, recordings and "
                       "webhook deliveries with their HTTP status."),
    "streams": (cmd_streams, "List the audio streams of live calls (--all: also the ended streams of those calls)."),
    "hangup": (cmd_hangup, "Hang up a live call (the hangup webhook says HangupSource=API Request)."),
    "stop-stream": (cmd_stop_stream, "Stop one stream of a live call, or all its streams; the call goes on."),
    "webhooks": (cmd_webhooks, "List the webhooks not delivered yet, oldest first (waiting, in flight, held "
                               "behind a failed one, failed, kept in memory while the database refuses writes), "
                               "with the queue's depth, the oldest one's age, receivers that are down and "
                               "failures per receiver host."),
    "retry-webhooks": (cmd_retry_webhooks, "Queue failed webhooks again (all, or one call's), with those held "
                                           "behind them: same idempotency keys, same order. --skip-failed: "
                                           "leave the failed ones failed and send the ones held behind them."),
    "tail": (cmd_tail, "Follow the live event feed of every call, or of one call (Ctrl-C to stop)."),
    "drain": (cmd_drain, "Take this node out of the pool: FreeSWITCH refuses new inbound calls (fsctl pause "
                         "inbound: a SIP proxy's OPTIONS pings get 503), calls that still reach callfork are "
                         "refused, the live calls finish, then the service exits; /healthz says draining (503) "
                         "meanwhile. FreeSWITCH stays paused until callfork starts again. A second drain "
                         "changes nothing. --wait: return once the service has exited."),
}
EPILOG = ("Talks to the running service through its HTTP API: the address and credentials come from "
          "the same config the service reads ([server] http_listen, auth_id, auth_token, or the token "
          "the service generated in data_dir/auth_token; CALLFORK_<SECTION>_<KEY> overrides apply). "
          "Exit status: 0 on success, 1 on an error (service not running, unknown call, refused credentials).")


def _parser(command: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"callfork {command}", description=COMMANDS[command][1], epilog=EPILOG)
    if command in ("calls", "call", "streams", "tail", "webhooks", "retry-webhooks", "drain"):
        p.add_argument("--json", action="store_true",
                       help="print JSON lines, one per event" if command == "tail" else "print JSON instead of tables")
    p.add_argument("--config", help="path to callfork.toml (default: $CALLFORK_CONFIG, else the loopback defaults)")
    p.add_argument("--url", help="base URL of the service (default: from [server] http_listen)")
    if command in ("call", "hangup", "stop-stream"):
        p.add_argument("uuid", help="the call UUID")
    if command == "tail":
        p.add_argument("uuid", nargs="?", help="follow only this call")
    if command == "retry-webhooks":
        p.add_argument("uuid", nargs="?", help="only this call's failed webhooks")
        p.add_argument("--skip-failed", action="store_true",
                       help="give up on the failed webhooks and send those held behind them")
    if command == "webhooks":
        p.add_argument("--status", help="comma-separated: pending, in_flight, held, failed, unsaved, delivered "
                                        "(default: every one not delivered)")
        p.add_argument("--call", metavar="UUID", help="only this call's webhooks")
        p.add_argument("--limit", type=int, default=100, help="at most this many (default 100, max 1000)")
    if command == "drain":
        p.add_argument("--wait", action="store_true", help="wait until the service has exited (its last call ended)")
        p.add_argument("--timeout", type=float, metavar="S", help="with --wait: give up after S seconds (exit 1)")
    if command == "stop-stream":
        p.add_argument("stream_id", nargs="?", help="the stream id (default: every stream of the call)")
    if command in ("calls", "streams"):
        p.add_argument("--all", action="store_true",
                       help="also ended calls" if command == "calls" else "also the ended streams of live calls")
    if command == "calls":
        p.add_argument("--limit", type=int, default=50, help="at most this many calls (default 50, max 100)")
    return p


def ops_main(command: str, argv, config_path=None) -> int:
    args = _parser(command).parse_args(argv)
    try:
        api = ApiClient(args.config or config_path, base_url=args.url)
        COMMANDS[command][0](api, args)
    except (OpsError, ConfigError) as exc:
        print(f"callfork {command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
