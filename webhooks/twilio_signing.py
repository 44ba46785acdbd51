"""X-Twilio-Signature: how Twilio signs the requests it sends to an app, for the calls whose app is a
Twilio app (`[[numbers]] api = "twilio"`).

base64(HMAC-SHA1(auth token, the full URL the request goes to + every form parameter's name and value,
names sorted, a name's distinct values sorted)); a GET carries its parameters in the URL and signs that
URL alone (https://www.twilio.com/docs/usage/webhooks/webhooks-security). The `twilio` package's
`RequestValidator` checks it in tests/test_twilio_signing.py.
"""
import base64
import hashlib
import hmac

from .signing import param_pairs, with_query


def twilio_signature(url, params, auth_token):
    """The signature of a POST of form `params` to `url` (for a GET: `url` with its query, no params)."""
    grouped = {}
    for key, value in param_pairs(params):
        grouped.setdefault(key, set()).add(value)
    message = url + ''.join(key + value for key in sorted(grouped) for value in sorted(grouped[key]))
    key = auth_token.encode('utf-8') if isinstance(auth_token, str) else bytes(auth_token)
    return base64.b64encode(hmac.new(key, message.encode('utf-8'), hashlib.sha1).digest()).decode('ascii')


def twilio_headers(url, params, auth_token, method='POST', idempotency_key=None):
    """The headers Twilio puts on a webhook: X-Twilio-Signature, and I-Twilio-Idempotency-Token
    (the same on every attempt of one webhook) when there is a key."""
    if not auth_token:
        raise ValueError('twilio_headers needs an auth token')
    if (method or 'POST').upper() == 'GET':
        signature = twilio_signature(with_query(url, params), None, auth_token)
    else:
        signature = twilio_signature(url, params, auth_token)
    headers = {'X-Twilio-Signature': signature}
    if idempotency_key:
        headers['I-Twilio-Idempotency-Token'] = idempotency_key
    return headers
