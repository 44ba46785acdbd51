"""Signatures: the worked examples of https://docs.vobiz.ai/concepts/validating-callbacks exactly, V1 from first principles
(hashlib/hmac on the Plivo V1 message), verification, nonces, and the vobiz SDK's own V2 validator
when the package is installed."""
import base64
import hashlib
import hmac
import importlib.util

import pytest

from webhooks import sign_headers, verify_v2, verify_v3
from webhooks.signing import sdk_v3_base_string, signature_v3_sdk

TOKEN = 'MY_AUTH_TOKEN'
NONCE = '12345678901234567890'
URL = 'https://app.example.com/answer?x=1'
PARAMS = {'CallUUID': 'abc', 'Direction': 'inbound', 'From': '14155550100', 'To': '14155550101'}

# the worked examples of https://docs.vobiz.ai/concepts/validating-callbacks
DOCS_V2 = 'ayqe29bSrpCYJI67Jp7ACifS89WLf8QfGnVs+0LLMBE='
DOCS_V3 = '23dXe5K+YjS9gpIRqep4z2nDlZPp7aJskndguZonYyc='
SDK_V3_POST = 'jEiNpLQp1IYWxm1j2sgr7F/45pp7cbGHMAmRBUHUOwc='
SDK_V3_GET = 'nb9hsBedYPPPkw2AmRuBrIfCkL9EwKVGHl25A2oq2zc='
SDK_V3_POST_BASE = ('https://app.example.com/answer?x=1.CallUUIDabcDirectioninboundFrom14155550100'
                    'To14155550101')
SDK_V3_GET_BASE = ('https://app.example.com/answer?CallUUID=abc&Direction=inbound&From=14155550100'
                   '&To=14155550101&x=1')


def headers(**kw):
    args = dict(nonce_v2=NONCE, nonce_v3=NONCE)
    args.update(kw)
    return sign_headers(URL, PARAMS, TOKEN, **args)


def test_v2_docs_example():
    h = headers()
    assert h['X-Vobiz-Signature-V2'] == DOCS_V2
    assert h['X-Vobiz-Signature-V2-Nonce'] == NONCE
    assert h['X-Vobiz-Signature-MA-V2'] == DOCS_V2


def test_v3_docs_example_is_default():
    h = headers()
    assert h['X-Vobiz-Signature-V3'] == DOCS_V3
    assert h['X-Vobiz-Signature-V3-Nonce'] == NONCE
    assert h['X-Vobiz-Signature-MA-V3'] == DOCS_V3


def test_v3_sdk_post_and_get_examples():
    assert headers(v3_mode='sdk')['X-Vobiz-Signature-V3'] == SDK_V3_POST
    assert headers(v3_mode='sdk', method='GET')['X-Vobiz-Signature-V3'] == SDK_V3_GET
    assert sdk_v3_base_string(URL, PARAMS, 'POST') == SDK_V3_POST_BASE
    assert sdk_v3_base_string(URL, PARAMS, 'GET') == SDK_V3_GET_BASE
    # GET: signing the configured URL + params equals signing the URL that carries them (what the
    # receiver sees)
    full = URL + '&CallUUID=abc&Direction=inbound&From=14155550100&To=14155550101'
    assert signature_v3_sdk(full, None, NONCE, TOKEN, 'GET') == SDK_V3_GET


def test_v2_v3_do_not_depend_on_params_or_query():
    a = sign_headers('https://app.example.com/answer?x=1#frag', {'A': '1'}, TOKEN, nonce_v2=NONCE, nonce_v3=NONCE)
    b = sign_headers('https://app.example.com/answer', {'B': '2'}, TOKEN, nonce_v2=NONCE, nonce_v3=NONCE)
    assert a['X-Vobiz-Signature-V2'] == b['X-Vobiz-Signature-V2'] == DOCS_V2
    assert a['X-Vobiz-Signature-V3'] == b['X-Vobiz-Signature-V3'] == DOCS_V3


def test_v1_plivo_rule_post_and_get():
    message = URL + 'CallUUIDabc' + 'Directioninbound' + 'From14155550100' + 'To14155550101'
    expected = base64.b64encode(hmac.new(TOKEN.encode(), message.encode(), hashlib.sha1).digest()).decode()
    assert headers()['X-Vobiz-Signature'] == expected
    assert len(expected) == 28  # the observed header is 28 base64 characters
    get_url = URL + '&CallUUID=abc&Direction=inbound&From=14155550100&To=14155550101'
    expected_get = base64.b64encode(hmac.new(TOKEN.encode(), get_url.encode(), hashlib.sha1).digest()).decode()
    assert headers(method='GET')['X-Vobiz-Signature'] == expected_get


def test_random_nonces_are_20_digits_and_differ():
    seen = set()
    for _ in range(50):
        h = sign_headers(URL, PARAMS, TOKEN)
        n2, n3 = h['X-Vobiz-Signature-V2-Nonce'], h['X-Vobiz-Signature-V3-Nonce']
        assert len(n2) == len(n3) == 20 and n2.isdigit() and n3.isdigit()
        assert n2 != n3
        seen.add(n2)
        assert verify_v2(URL, n2, h['X-Vobiz-Signature-V2'], TOKEN)
        assert verify_v3(URL, n3, h['X-Vobiz-Signature-V3'], TOKEN)
    assert len(seen) == 50


def test_verify_accepts_good_and_rejects_bad():
    assert verify_v2(URL, NONCE, DOCS_V2, TOKEN)
    assert verify_v2('https://app.example.com/answer', NONCE, 'junk,' + DOCS_V2, TOKEN)  # list form
    assert not verify_v2(URL, NONCE, DOCS_V2, 'OTHER_TOKEN')
    assert not verify_v2(URL, '12345678901234567891', DOCS_V2, TOKEN)
    assert not verify_v2('https://app.example.com/other', NONCE, DOCS_V2, TOKEN)
    assert not verify_v2(URL, NONCE, '', TOKEN)
    assert not verify_v2(URL, '', DOCS_V2, TOKEN)
    assert verify_v3(URL, NONCE, DOCS_V3, TOKEN)
    assert not verify_v3(URL, NONCE, DOCS_V2, TOKEN)
    assert verify_v3(URL, NONCE, SDK_V3_POST, TOKEN, params=PARAMS, v3_mode='sdk')
    assert verify_v3(URL, NONCE, SDK_V3_GET, TOKEN, params=PARAMS, method='GET', v3_mode='sdk')
    assert not verify_v3(URL, NONCE, SDK_V3_POST, TOKEN, params={'CallUUID': 'abd'}, v3_mode='sdk')
    # the SDK rejects the documented form (reference §5.5), so must we in sdk mode
    assert not verify_v3(URL, NONCE, DOCS_V3, TOKEN, params=PARAMS, v3_mode='sdk')


def test_parent_token_signs_ma_headers():
    h = sign_headers(URL, PARAMS, TOKEN, nonce_v2=NONCE, nonce_v3=NONCE, parent_auth_token='PARENT')
    assert h['X-Vobiz-Signature-V2'] == DOCS_V2
    assert h['X-Vobiz-Signature-MA-V2'] != DOCS_V2
    assert verify_v2(URL, NONCE, h['X-Vobiz-Signature-MA-V2'], 'PARENT')


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        sign_headers(URL, PARAMS, TOKEN, v3_mode='other')
    with pytest.raises(ValueError):
        sign_headers(URL, PARAMS, '')


@pytest.mark.skipif(importlib.util.find_spec('vobiz') is None, reason='vobiz-python (package vobiz) not installed')
def test_vobiz_sdk_validator_accepts_our_v2():
    from vobiz.utils import validate_signature  # noqa: WPS433 (optional dependency)
    h = sign_headers(URL, PARAMS, TOKEN)
    assert validate_signature(URL, h['X-Vobiz-Signature-V2-Nonce'], h['X-Vobiz-Signature-V2'], TOKEN)


@pytest.mark.skipif(importlib.util.find_spec('vobiz') is None, reason='vobiz-python (package vobiz) not installed')
def test_vobiz_sdk_v3_validator_accepts_our_sdk_mode():
    from vobiz.utils.signature_v3 import validate_v3_signature  # noqa: WPS433 (optional dependency)
    for method in ('POST', 'GET'):
        h = sign_headers(URL, PARAMS, TOKEN, method=method, v3_mode='sdk')
        assert validate_v3_signature(method, URL, h['X-Vobiz-Signature-V3-Nonce'], TOKEN,
                                     h['X-Vobiz-Signature-V3'], dict(PARAMS))


@pytest.mark.skipif(importlib.util.find_spec('plivo') is None, reason='plivo SDK not installed')
def test_plivo_sdk_v3_validator_accepts_our_sdk_mode():
    from plivo.utils.signature_v3 import validate_v3_signature  # noqa: WPS433 (optional dependency)
    for method in ('POST', 'GET'):
        h = sign_headers(URL, PARAMS, TOKEN, method=method, v3_mode='sdk')
        assert validate_v3_signature(method, URL, h['X-Vobiz-Signature-V3-Nonce'], TOKEN,
                                     h['X-Vobiz-Signature-V3'], dict(PARAMS))
