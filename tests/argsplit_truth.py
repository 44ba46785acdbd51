"""What FreeSWITCH's API argument splitting (switch_separate_string + cleanup_separated_string, after
mod_event_socket's line reading and switch_api_execute's trim) makes of an argument, captured on a
real FreeSWITCH and replayed on the simulator.

The probe is `uuid_setvar <uuid> <name> <value>` on a parked channel: mod_commands splits its
argument with switch_separate_string(' ', 3 slots) -- the splitter mod_audio_fork uses with 7 or 10
slots, and the one every command callfork sends goes through -- and what the channel then holds
(read back with `uuid_dump <uuid> json`, byte exact) is what FreeSWITCH got. Every case sets fresh
names or values, so the variables that are new or changed after it are its result. Each text is
tried as the last argument (the value: the last slot, which keeps the unsplit rest of the line) and
in the middle (the name, followed by a value). Then the `^^X` delimiter prefix at the start, a few
first-position, usage and error cases, `uuid_getvar` (4 slots) reading names back, what the ESL
line does to the ends of an argument (switch_strip_whitespace trims only space, \\t, \\n, \\v, \\r;
a \\r ends the command), and the arguments callfork's fsargs.quote_api_arg writes for texts, which
must come back unchanged.

    python tests/argsplit_truth.py capture --esl 127.0.0.1:8021:ClueCon --out tests/fixtures/fs-captures/api-argsplit.json
    python tests/argsplit_truth.py sim            # the same cases on the simulator, differences printed

The capture needs only a FreeSWITCH with mod_commands and mod_loopback whose dialplan parks 9999
(the freeswitch-test configuration). tests/test_sim_argsplit_truth.py replays the fixture.
"""
from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey
    monkey.patch_all()

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

import truth_capture  # noqa: E402
from fsargs import quote_api_arg  # noqa: E402
from truth_capture import Switch, compare_cases  # noqa: E402

# argument texts as they stand on the ESL line
TEXTS = [
    "plain", "a b", "a   b", "'a b'", "'a b' c", "a'b c'd", "it's", "'", "''", "' '", "'''", "''''",
    "'it''s'", "'x '", "' x'", "'a'b'c'", '"a b"', '"', '\\"', "\\'", "\\\\", "a\\\\b", "\\\\\\\\",
    "a\\b", "\\d+", "a\\ b", "\\,", "\\:", "\\=", "\\x41", "\\s", "\\sx\\s", "a\\sb", "\\n", "\\t", "\\r",
    "\\S", "é€ 日本語 🎉", "x\u00a0", "\u00a0x", "x\u2028", "x\u0085", "x\x0c", "\x0cx", "${uuid}",
    "$${base_dir}", "\\${x}", "^^:a:b", "x^^y", "%[x]", "{a=b,c=d}", "a=b;c=d", "'\\''", "\\''",
]
# texts callfork writes with fsargs.quote_api_arg (tests/test_fsargs.py's list, control characters
# aside); FreeSWITCH must give each back unchanged
QUOTED = [
    "plain", "a b", " lead", "trail ", "  both  ", " ", "   ", "it's", "'", "''", "' '", "'quoted'",
    '"double"', '"', 'say "hi" to \'them\'', "back\\slash", "\\", "\\\\", "end\\", "\\s", "\\n",
    "\\'", "\\\"", "line1\nline2", "\n", "\r\n", "cr\r", "\ttab\t", "tab\tin", "mixed \t\n\r '\"\\ all",
    "é€ 日本語 🎉", "\u2028 and \u0085", "${uuid} $${base_dir} \\${x}", "a=b;c=d", "{\"json\": [1, \" \"]}",
    "^", "^^", "^^:", "^^:a:b", "^^ x", "x^^y", "%[x]", "100%", "",
]


def cases() -> list[dict]:
    """The probes in order: {"api", "arg"} with `{U}` for the channel's uuid (and "text" for the
    quote_api_arg ones). Names and values are numbered, so each case's result is new."""
    out = []
    n = 0

    def add(api, arg, **extra):
        nonlocal n
        n += 1
        out.append(dict(api=api, arg=arg.replace("{N}", str(n)), **extra))

    # (a name with `[` is an array element to FreeSWITCH's event headers: not a splitting matter)
    for text in TEXTS:
        add("uuid_setvar", "{U} last{N} " + text)
        if "[" not in text:
            add("uuid_setvar", "{U} " + text + " m{N}")
    for text in QUOTED:
        q = quote_api_arg(text)
        add("uuid_setvar", "{U} quoted{N} " + q, text=text)
        if "[" not in text:
            add("uuid_setvar", "{U} " + q + " m{N}", text=text)
    # ^^X: another delimiter, with its own rules (a quote needs a partner, \X escapes X)
    for arg in ["^^:{U}:d{N}:a b:c", "^^:{U}:d{N}:'x:y'", "^^:{U}:d{N}:\\:z", "^^:{U}:d{N}:it's",
                "^^:{U}:d{N}:'a':'b'", "^^;{U};d{N};  a  ;b", "^^,{U},d{N},a,b", "^^ {U} d{N} x y",
                "^^:{U}:d{N}:\\\\", "^^:{U}:d{N}:\\s", "^^:{U}:d{N}::", "^^:{U}:d{N}:", "^^:{U}: d{N} : v ",
                "^^:{U}:d{N}:a\\,b", "^^:{U}:'d{N}:x':y", "^^:{U}:d{N}:\\'", "^^:{U}:d{N}:a'b:c",
                "^^:{U}:d{N}:\\x", "^^::{U}:d{N}:x", "^^:", "^^"]:
        add("uuid_setvar", arg)
    # first position, usage and errors
    for arg in ["'{U}' f{N} x", "{U}\\s f{N} x", "{U} '' x", "{U} ''", "{U}", "{U} f{N}", "nosuch f{N} x",
                "  {U}   f{N}   x  y  ", "{U}\tf{N} x", "{U} f{N}\tx", "{U} f{N} x\t", "{U} f{N} x\x0b",
                "{U} f{N} a\rb", "{U} f{N} x \r y"]:
        add("uuid_setvar", arg)
    # uuid_getvar: 4 slots, the name is the second
    add("uuid_setvar", "{U} 'sp ace' g{N}")
    for arg in ["{U} 'sp ace'", "{U} sp\\sace", "{U} sp ace", "{U} 'sp ace' extra", "{U} last1",
                "{U}  last1  ", "{U} 'last1'", "{U} ''", "{U}", "nosuch last1", "{U} nosuch"]:
        add("uuid_getvar", arg)
    return out


def run(switch: Switch) -> list[dict]:
    """Every case on `switch`: the case with its "reply" and, for uuid_setvar, "set" (the variables
    new or changed by it)."""
    results = []
    before = switch.variables()
    for case in cases():
        reply = switch.api(case["api"] + " " + case["arg"].replace("{U}", switch.uuid))
        result = dict(case, reply=reply)
        if case["api"] == "uuid_setvar":
            after = switch.variables()
            result["set"] = {k: v for k, v in after.items() if before.get(k) != v}
            before = after
        results.append(result)
    return results


def capture(address, password: str) -> list[dict]:
    """Every case on the (real) switch at `address`."""
    with Switch(address, password) as switch:
        return run(switch)


def replay(sim) -> list[dict]:
    """Every case on a running simulator."""
    with Switch.on_simulator(sim) as switch:
        return run(switch)


def compare(expected: list, got: list, label: str = "simulator") -> list:
    def differences(want, have):
        return [f"{want['api']} {want['arg']!r}: {key} {want.get(key)!r}, {label} {have.get(key)!r}"
                for key in ("reply", "set") if want.get(key) != have.get(key)]
    return compare_cases(expected, got, lambda case: (case["api"], case["arg"]), differences)


def main(argv=None) -> int:
    return truth_capture.main(argv, doc=__doc__, fixture="api-argsplit.json", capture=capture, replay=replay,
                              compare=compare)


if __name__ == "__main__":
    sys.exit(main())
