"""The simulator says who the caller is on an originated channel exactly as FreeSWITCH 1.10.12 does:
every case of tests/originate_cid_truth.py, captured on a real FreeSWITCH (tests/fixtures/
fs-captures/originate-callerid.json), replayed on the simulator over TCP ESL and a real outbound
socket: the caller-id headers of the connect reply and of CHANNEL_HANGUP_COMPLETE, and the
caller-id variables. FreeSWITCH flips caller and callee id on a channel it originates, so the
channel's caller id is not the caller id callfork asked for."""
import json
import os

import pytest

import originate_cid_truth
from conftest import CAPTURES
from switch_sim.apis.calls import sanitize_number
from truth_capture import esl_setting, on_simulator

CAPTURED = json.loads((CAPTURES / "originate-callerid.json").read_text(encoding="utf-8"))["cases"]


def test_the_capture_has_every_case():
    assert [(c["arg"], c["tail"]) for c in CAPTURED] == [(c["arg"], c["tail"]) for c in originate_cid_truth.cases()]


def test_simulator_matches_freeswitch():
    got = on_simulator(originate_cid_truth.replay)
    problems = originate_cid_truth.compare(CAPTURED, got)
    assert not problems, "\n".join(problems)


def test_what_freeswitch_does_in_short():
    rest_call = CAPTURED[0]          # callfork's own block and dial string, from=+14155550100, caller_name=Alice
    assert "origination_caller_id_name=Alice" in rest_call["arg"]
    for key in ("connect", "hangup_complete"):
        headers = rest_call[key]
        # the caller id callfork asked for is not the channel's caller id ...
        assert (headers["Caller-Caller-ID-Name"], headers["Caller-Caller-ID-Number"]) == ("Outbound Call", "default")
        # ... it is the callee id, the orig caller id, the ANI and the origination_* variables
        assert (headers["Caller-Callee-ID-Name"], headers["Caller-Callee-ID-Number"]) == ("Alice", "+14155550100")
        assert headers["Caller-Orig-Caller-ID-Number"] == headers["Caller-ANI"] == "+14155550100"
        assert headers["variable_origination_caller_id_name"] == "Alice"
        assert headers["variable_origination_caller_id_number"] == "+14155550100"
        assert headers["variable_channel_cid_flipped"] == "yes"
        # the destination is loopback's number, not what the REST caller dialled through it
        assert headers["Caller-Destination-Number"] == "9999" and headers["Call-Direction"] == "outbound"
    # the callee number is the sanitized rest of the dial string: without a context, the number itself
    assert CAPTURED[2]["connect"]["Caller-Caller-ID-Number"] == "9196"
    # no caller id asked for: "0000000000" and no name
    assert CAPTURED[3]["connect"]["Caller-Callee-ID-Number"] == "0000000000"
    assert "Caller-Callee-ID-Name" not in CAPTURED[3]["connect"]


def test_sanitize_number():
    assert sanitize_number("9999/default") == "default"
    assert sanitize_number("9196") == "9196"
    assert sanitize_number("gateway/carrier/15557654321") == "15557654321"
    assert sanitize_number("internal/sip:1000@example.com:5060") == "1000"
    assert sanitize_number("a@b@c") == "a"


@pytest.mark.freeswitch
def test_freeswitch_still_behaves_as_captured():
    got = originate_cid_truth.capture(*esl_setting(os.environ["CALLFORK_FS_ESL"]))     # paced
    problems = originate_cid_truth.compare(CAPTURED, got, "this FreeSWITCH")
    assert not problems, "\n".join(problems)
