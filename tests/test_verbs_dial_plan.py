"""The FreeSWITCH dial string a dial becomes (verbs/dial_plan.py), read back with the simulator's
port of FreeSWITCH's own splitting (switch_sim.dialstring)."""
import pytest

from esl_app.config import FreeswitchConfig
from switch_sim import dialstring
from verbs.dial_plan import DialError, DialPlan, DialTarget, dial_string, make_legs

FS = FreeswitchConfig(originate_dialstring="{sip_cid_type=none}sofia/gateway/carrier/{to}")


def _parse(plan):
    legs = make_legs(plan, "15551230001")
    return legs, dialstring.parse(dial_string(plan, legs, "A-UUID", FS))


def test_each_leg_carries_its_uuid_timeout_caller_id_and_headers():
    plan = DialPlan([DialTarget("number", "+14155550101", sip_headers={"Team": "ops"}),
                     DialTarget("sip", "sip:agent@example.com")],
                    caller_id="15550001111", caller_name="Front desk", timeout_s=20, time_limit_s=60)
    legs, parsed = _parse(plan)
    (group,) = parsed.groups
    first, second = group
    assert first.variables["origination_uuid"] == legs[0].uuid and second.variables["origination_uuid"] == legs[1].uuid
    assert first.endpoint == "sofia/gateway/carrier/+14155550101"
    assert first.variables["sip_cid_type"] == "none"           # the template's own block, kept per leg
    assert second.endpoint == "sofia/internal/sip:agent@example.com"
    for leg in group:
        assert leg.variables["leg_timeout"] == "20"
        assert leg.variables["origination_caller_id_number"] == "15550001111"
        assert leg.variables["origination_caller_id_name"] == "Front desk"
        assert leg.variables["callfork_dial_a"] == "A-UUID"
        assert leg.variables["execute_on_answer_1"] == "sched_hangup +60 ALLOTTED_TIMEOUT"
    assert first.variables["sip_h_X-VH-Team"] == "ops"
    assert parsed.variables["originate_timeout"] == "22"
    assert parsed.variables["bridge_early_media"] == "true"


def test_confirm_goes_in_the_global_block_and_a_ringback_file_ignores_early_media():
    plan = DialPlan([DialTarget("number", "1001")], confirm_key="5", confirm_file="/tmp/p.wav",
                    confirm_timeout_s=7, ringback_file="file_string:///tmp/m.wav!silence_stream://500")
    _, parsed = _parse(plan)
    assert parsed.variables["group_confirm_key"] == "5"
    assert parsed.variables["group_confirm_file"] == "/tmp/p.wav"
    assert parsed.variables["group_confirm_timeout"] == "7"
    assert parsed.variables["ignore_early_media"] == "true" and "bridge_early_media" not in parsed.variables


@pytest.mark.parametrize("field, value", [("caller_name", "Smith, John"), ("caller_name", "${uuid}"),
                                          ("caller_id", "1|2"), ("confirm_file", "a'b")])
def test_a_value_the_dial_string_cannot_carry_is_refused(field, value):
    plan = DialPlan([DialTarget("number", "1001")], **{field: value})
    if field == "confirm_file":
        plan.confirm_key = "1"
    with pytest.raises(DialError):
        dial_string(plan, make_legs(plan, "1"), "A", FS)
