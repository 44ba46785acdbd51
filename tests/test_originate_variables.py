"""The channel variables of a REST-placed call reach FreeSWITCH unchanged, commas, quotes, spaces and
backslashes included: callfork.originate.variable_block against FreeSWITCH's splitting (the
simulator's port of it, pinned to tests/fixtures/fs-captures/originate-vars.json), a REST call on
the simulator, and (marked `freeswitch`) a REST call on a real FreeSWITCH."""
import random

import pytest
import requests

from callfork.originate import variable_block
from harness import Stack
from switch_sim.argsplit import create_brackets, separate_string

NAMES = ["Doe, John", "O'Brien, Pat", "a,b,,c", " lead", "trail ", "back\\slash", "\\,", "x=y",
         '"q, r"', "é€ 日本語, 🎉", "^^:x,y", "[a]<b>", "a|b", "100%", "$x"]


def freeswitch_reads(first_argument: str) -> dict:
    """The variables FreeSWITCH 1.10.12 gives the channel for `originate <first_argument> &park()`:
    the command line split into 10 slots, then the `{...}` block read by switch_event_create_brackets."""
    argv = separate_string(first_argument + " &park()", max_parts=10)
    variables, rest = create_brackets(argv[0])
    assert rest == "loopback/9999/default"
    return variables


@pytest.mark.parametrize("name", NAMES)
def test_every_value_arrives_unchanged(name):
    block = variable_block({"origination_uuid": "u-1", "origination_caller_id_name": name, "n": 5})
    assert " " not in block
    assert freeswitch_reads(block + "loopback/9999/default") == {
        "origination_uuid": "u-1", "origination_caller_id_name": name, "n": "5"}


def test_single_quotes_did_not_keep_the_comma():
    """What callfork wrote before: FreeSWITCH's command-line splitting drops the quotes, then the
    block is split on the comma."""
    assert freeswitch_reads("{origination_caller_id_name='Doe, John',n='5'}loopback/9999/default") == {
        "origination_caller_id_name": "Doe", "n": "5"}


def test_random_values_arrive_unchanged():
    rng = random.Random(1012)
    alphabet = " ,'\"\\=^|:_{}[]<>$%sné"
    for _ in range(2000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 10)))
        if "{" in value or "}" in value or ":_:" in value:
            with pytest.raises(ValueError):
                variable_block({"v": value})
            continue
        got = freeswitch_reads(variable_block({"a": "1", "v": value, "z": "2"}) + "loopback/9999/default")
        assert got == {"a": "1", "v": value, "z": "2"}, (value, variable_block({"v": value}))


@pytest.mark.parametrize("value", ["x}y", "{x", "a:_:b", "bell\x07", "tab\there", "nl\n", "del\x7f"])
def test_what_cannot_be_written_is_refused(value):
    with pytest.raises(ValueError, match="not allowed here"):
        variable_block({"origination_caller_id_name": value})


def _rest_call(stack, caller_name: str, to: str):
    stack.app.document("/outbound", "<Response><Wait length='2'/></Response>")
    resp = requests.post(stack.api_url("/Call/"), headers=stack.api_headers(), timeout=10,
                         json={"from": "15551230001", "to": to, "caller_name": caller_name,
                               "answer_url": stack.app.url("/outbound"),
                               "hangup_url": stack.app.url("/outbound-hangup")})
    assert resp.status_code == 201, resp.text
    start = stack.app.wait_path("/outbound", timeout=20)[0].form
    uuid = start["CallUUID"]
    variables = {name: stack.service.control.api(f"uuid_getvar {uuid} {name}")
                 for name in ("origination_caller_id_name", "callfork_request_uuid", "origination_caller_id_number")}
    hangup = stack.app.wait_event("Hangup", timeout=20, path="/outbound-hangup").form
    return resp.json()["request_uuid"], start, variables, hangup


def test_rest_call_with_a_comma_in_the_caller_name_on_the_simulator():
    with Stack() as stack:
        request_uuid, start, variables, hangup = _rest_call(stack, "O'Brien, Pat \\ Jr.", "15557654321")
    assert variables == {"origination_caller_id_name": "O'Brien, Pat \\ Jr.", "callfork_request_uuid": request_uuid,
                         "origination_caller_id_number": "15551230001"}
    assert start["RequestUUID"] == request_uuid and hangup["CallUUID"] == start["CallUUID"]


@pytest.mark.freeswitch
def test_rest_call_with_a_comma_in_the_caller_name_on_freeswitch():
    """loopback/9999: the far leg answers and parks; the A leg runs `socket` to callfork."""
    with Stack(real=True) as stack:
        request_uuid, start, variables, hangup = _rest_call(stack, "O'Brien, Pat \\ Jr.", "9999")
    assert variables == {"origination_caller_id_name": "O'Brien, Pat \\ Jr.", "callfork_request_uuid": request_uuid,
                         "origination_caller_id_number": "15551230001"}
    assert start["RequestUUID"] == request_uuid and hangup["CallUUID"] == start["CallUUID"]
