"""What the capture-and-replay tools (tests/argsplit_truth.py, tests/originate_truth.py,
tests/originate_cid_truth.py) share: an authenticated ESL connection and the wait for an `api`
reply, a switch with one parked channel (`Switch`), running a tool's cases on a fresh simulator,
the frame of a comparison (same cases in the same order, then the counts), and the command line
(`capture --esl host:port:password --out file` writes `{"freeswitch", "doc", "cases"}` JSON; `sim`
replays the cases on the simulator and prints the differences from the fixture). Each tool keeps
its cases, how it runs one and what of a case it compares.
"""
from __future__ import annotations

import argparse
import json
import uuid as uuidlib
from pathlib import Path
from typing import Callable

from sim_support import RawESL

FIXTURES = Path(__file__).parent / "fixtures" / "fs-captures"


def esl_setting(text: str) -> tuple[tuple[str, int], str]:
    """`host:port:password` (the --esl option, CALLFORK_FS_ESL) -> ((host, port), password)."""
    host, port, password = text.split(":", 2)
    return (host, int(port)), password


def esl_connect(address, password: str = "ClueCon") -> RawESL:
    """An inbound ESL connection, authenticated."""
    esl = RawESL.connect(address, timeout=10)
    esl.frame()
    headers, _b, _raw = esl.command("auth " + password)
    assert headers.get("Reply-Text", "").startswith("+OK"), headers
    return esl


def api_response(esl: RawESL, timeout: float = 10) -> str:
    """The body of the next api/response frame on `esl` (other frames are skipped)."""
    while True:
        headers, body, _raw = esl.frame(timeout)
        if headers.get("Content-Type") == "api/response":
            return body.decode("utf-8")


class Switch:
    """An ESL connection to a switch with one parked channel: `api(line)` -> the reply body (bytes
    sent as they are); `variables()` -> the channel's variables. A context manager: leaving it
    kills the channel and closes the connection."""

    def __init__(self, address, password="ClueCon", variables=None):
        self.esl = esl_connect(address, password)
        self.uuid = str(uuidlib.uuid4())
        reply = self.api(f"originate {{origination_uuid={self.uuid}}}loopback/9999/default &park()")
        assert reply.startswith("+OK"), reply
        self._variables = variables

    @classmethod
    def on_simulator(cls, sim) -> "Switch":
        """A Switch on a running switch_sim.Simulator, reading the channels' variables off it."""
        return cls(sim.esl_address, variables=lambda uuid: getattr(sim.get_channel(uuid), "variables", {}))

    def api(self, line: str) -> str:
        self.esl.sock.sendall(("api " + line + "\n\n").encode("utf-8"))
        return api_response(self.esl)

    def variables(self, uuid: str | None = None) -> dict:
        """The variables of the parked channel (or of channel `uuid`)."""
        uuid = uuid or self.uuid
        if self._variables is not None:
            return dict(self._variables(uuid))
        dump = json.loads(self.api(f"uuid_dump {uuid} json"))
        return {k[len("variable_"):]: v for k, v in dump.items() if k.startswith("variable_")}

    def close(self):
        self.api(f"uuid_kill {self.uuid}")
        self.esl.close()

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()


def on_simulator(replay: Callable) -> list[dict]:
    """`replay(sim)` on a fresh switch_sim.Simulator (outbound sockets aimed at 127.0.0.1:9),
    stopped afterwards."""
    from switch_sim import Simulator
    sim = Simulator(socket_target=("127.0.0.1", 9)).start()
    try:
        return replay(sim)
    finally:
        sim.stop()


def compare_cases(expected: list, got: list, key: Callable, differences: Callable) -> list[str]:
    """The problems of a run against a capture: `differences(want, have)` (lines) for each captured
    case and the case run in its place, which must be the same one (`key`), then whether as many
    cases ran as were captured."""
    problems = []
    for want, have in zip(expected, got):
        assert key(want) == key(have), "the cases changed: capture again"
        problems += differences(want, have)
    if len(expected) != len(got):
        problems.append(f"{len(expected)} cases captured, {len(got)} run")
    return problems


def main(argv, *, doc: str, fixture: str, capture: Callable, replay: Callable, compare: Callable,
         doc_paragraphs: int = 2) -> int:
    """A tool's command line. `capture(address, password)` -> the results on a real FreeSWITCH,
    written to --out with its version and the first `doc_paragraphs` paragraphs of `doc`;
    `replay(sim)` -> the results on a simulator, compared (`compare(captured, got)`) with the
    fixture `fixture` (a file in tests/fixtures/fs-captures) and the differences printed."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    cap = sub.add_parser("capture", help="run the cases on a real FreeSWITCH and write the results")
    cap.add_argument("--esl", default="127.0.0.1:8021:ClueCon")
    cap.add_argument("--out", required=True)
    sub.add_parser("sim", help="run the cases on the simulator and print the differences from the capture")
    args = parser.parse_args(argv)
    if args.cmd == "capture":
        address, password = esl_setting(args.esl)
        results = capture(address, password)
        esl = esl_connect(address, password)
        try:
            version = esl.command("api version")[1].decode().strip()
        finally:
            esl.close()
        record = {"freeswitch": version,
                  "doc": " ".join(doc.split("\n\n")[0:doc_paragraphs]).replace("\n", " "),
                  "cases": results}
        Path(args.out).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return 0
    got = on_simulator(replay)
    captured = json.loads((FIXTURES / fixture).read_text("utf-8"))
    for line in compare(captured["cases"], got):
        print(line)
    return 0


def capture_main(argv, *, doc: str, capture: Callable) -> int:
    """The command line of a capture tool with no simulator replay of its own: `capture --esl
    host:port:password --out FILE` writes `capture(address, password)` (a JSON-able record) to FILE."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    cap = sub.add_parser("capture")
    cap.add_argument("--esl", default="127.0.0.1:8021:ClueCon")
    cap.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    address, password = esl_setting(args.esl)
    record = capture(address, password)
    Path(args.out).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0

