"""What FreeSWITCH's originate makes of the channel variables in front of its dial string
(`<...>` and `{...}` blocks, read by switch_event_create_brackets after the command line's own
switch_separate_string), captured on a real FreeSWITCH and replayed on the simulator.

Each case is one `originate <first argument> &park()`, `{U}` standing for the new channel's
origination_uuid; its result is the reply and the channel variables whose names start with `cf`
(read back with `uuid_dump <uuid> json`). The raw cases show the rules: quotes do not keep a comma
in a value (the command line's splitting already dropped them), `\\,` does, `=` in a value, nested
braces, several blocks, `^^X` in a block, an unclosed block, `:_:` anywhere (FreeSWITCH then
splits the whole dial string there, for an enterprise originate). The callfork cases are the blocks
callfork.originate.variable_block writes for awkward caller names (`text`: what must arrive).

    python tests/originate_truth.py capture --esl 127.0.0.1:8021:ClueCon --out tests/fixtures/fs-captures/originate-vars.json
    python tests/originate_truth.py sim          # the same cases on the simulator, differences printed

The capture (about 5 s: originates are paced under sessions-per-second) needs a FreeSWITCH with mod_commands and mod_loopback whose dialplan parks 9999 (the
freeswitch-test configuration). tests/test_sim_originate_truth.py replays the fixture.
"""
from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey
    monkey.patch_all()

import sys  # noqa: E402
import time  # noqa: E402
import uuid as uuidlib  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

import truth_capture  # noqa: E402
from callfork.originate import variable_block  # noqa: E402
from truth_capture import Switch, compare_cases  # noqa: E402

TAIL = "loopback/9999/default &park()"
PLACEHOLDER = "00000000-0000-4000-8000-00000000000a"     # stands for {U} while callfork writes the block
RAW = [
    "{origination_uuid={U},cf{N}='Doe, John'}",
    "{origination_uuid={U},cf{N}='Doe,John'}",
    "{origination_uuid={U},cf{N}=x\\,y}",
    "{origination_uuid={U},cf{N}=x\\\\,y}",
    "{origination_uuid={U},cf{N}='x\\,y'}",
    "{origination_uuid={U},cf{N}=\\'x,y\\'}",
    "{origination_uuid={U},cf{N}=\\'x\\,y\\'}",
    "{origination_uuid={U},cf{N}=a\\'b}",
    "{origination_uuid={U},cf{N}=a=b}",
    "{origination_uuid={U},cf{N}=\\sx\\s}",
    "{origination_uuid={U},cf{N}=\\\\sx\\\\s}",
    "{origination_uuid={U},cf{N}=a\\\\\\\\b}",
    "{origination_uuid={U},cf{N}=é€\\s日本語}",
    "{origination_uuid={U},cf{N}={x},cfb{N}=2}",
    "{origination_uuid={U}}{cf{N}=1,cfb{N}=2}",
    "{^^:origination_uuid={U}:cf{N}=1,2:cfb{N}=x}",
    "<cf{N}=1>{origination_uuid={U},cfb{N}=2}",
    "{origination_uuid={U},cf{N},cfb{N}=,cfc{N}=''}",
    "{origination_uuid={U},cf{N}=1,cf{N}=2}",
    "{origination_uuid={U},cf{N}=1",
    "{origination_uuid={U},cf{N}=a'b}",
    "{origination_uuid={U},cf{N}=a|b}",
    "{origination_uuid={U},cf{N}=a:_:b}",
]
# caller names (and other values) callfork must deliver
TEXTS = [
    "Doe, John", "O'Brien, Pat", "a,b,,c", ",", " lead", "trail ", "  ", "a\\b", "\\,", "\\s", "\\'",
    "x=y", "a'b'c", "''", '"q, r"', "é€ 日本語, 🎉", "^^:x,y", "[a]<b>", "a|b", "a:_b", "100%", "$x", "",
]


def cases() -> list[dict]:
    out = []
    for n, block in enumerate(RAW, 1):
        out.append({"arg": block.replace("{N}", str(n)) + TAIL})
    for n, text in enumerate(TEXTS, len(RAW) + 1):
        block = variable_block({"origination_uuid": PLACEHOLDER, f"cf{n}": text})
        out.append({"arg": block.replace(PLACEHOLDER, "{U}") + TAIL, "text": text})
    return out


def run(switch: Switch, pace: float = 0.0) -> list[dict]:
    """Every case on `switch`, `pace` seconds apart (a real FreeSWITCH refuses more than
    sessions-per-second, 30 by default, and a refused loopback originate never returns)."""
    results = []
    for case in cases():
        time.sleep(pace)   # pacing (see the docstring)
        uuid = str(uuidlib.uuid4())
        reply = switch.api("originate " + case["arg"].replace("{U}", uuid))
        variables = {}
        if reply.startswith("+OK"):
            variables = {k: v for k, v in switch.variables(uuid).items() if k.startswith("cf")}
            switch.api("uuid_kill " + uuid)
        results.append(dict(case, reply=reply.replace(uuid, "{U}"), set=variables))
    return results


def capture(address, password: str) -> list[dict]:
    """Every case on the (real) switch at `address`, paced."""
    with Switch(address, password) as switch:
        return run(switch, pace=0.1)


def replay(sim) -> list[dict]:
    """Every case on a running simulator."""
    with Switch.on_simulator(sim) as switch:
        return run(switch)


def compare(expected: list, got: list, label: str = "simulator") -> list:
    def differences(want, have):
        return [f"originate {want['arg']!r}: {key} {want[key]!r}, {label} {have[key]!r}"
                for key in ("reply", "set") if want[key] != have[key]]
    return compare_cases(expected, got, lambda case: case["arg"], differences)


def main(argv=None) -> int:
    return truth_capture.main(argv, doc=__doc__, fixture="originate-vars.json", capture=capture, replay=replay,
                              compare=compare)


if __name__ == "__main__":
    sys.exit(main())
