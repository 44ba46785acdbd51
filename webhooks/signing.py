"""Request signing for outgoing webhooks: the X-Vobiz-Signature headers (V1, V2, V3, MA-V2, MA-V3).

Algorithms (https://docs.vobiz.ai/concepts/validating-callbacks; docs/decisions.md):
- V1: base64(HMAC-SHA1(token, full URL + concat(sorted key+value of the POST params))) (the Plivo V1 rule).
- V2: base64(HMAC-SHA256(token, baseURL + nonce)), baseURL = scheme://host/path (no query, no fragment).
- V3 "docs": base64(HMAC-SHA256(token, baseURL + "." + nonce)).
- V3 "sdk": the vobiz-python / plivo SDK validator's form, which includes the query and the parameters.
- MA-V2 / MA-V3: keyed by the parent account token; equal to V2/V3 for a single account.
Nonces are random 20-digit numbers, different for V2 and V3.
"""
import base64
import hashlib
import hmac
import secrets
from urllib.parse import parse_qs, urlencode, urlparse, urlsplit, urlunparse, urlunsplit

V3_MODES = ('docs', 'sdk')
# who signs a call's webhooks and document fetches: its app's API (`[[numbers]] api`)
SIGNERS = ('vobiz', 'twilio')


def _b64_hmac(token, message, digest):
    key = token.encode('utf-8') if isinstance(token, str) else bytes(token)
    msg = message.encode('utf-8') if isinstance(message, str) else bytes(message)
    return base64.b64encode(hmac.new(key, msg, digest).digest()).decode('ascii')


def new_nonce():
    """A random 20-digit decimal nonce (first digit non-zero)."""
    return str(secrets.randbelow(9 * 10 ** 19) + 10 ** 19)


def param_pairs(params):
    """Normalise params (dict, list of pairs or None) into a list of (str, str) pairs."""
    if not params:
        return []
    items = params.items() if hasattr(params, 'items') else params
    pairs = []
    for key, value in items:
        if isinstance(value, (list, tuple)):
            pairs.extend((str(key), _text(v)) for v in value)
        else:
            pairs.append((str(key), _text(value)))
    return pairs


def _text(value):
    if value is None:
        return ''
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    return str(value)


def with_query(url, params):
    """`url` with `params` appended to its query string (how GET requests carry their parameters)."""
    pairs = param_pairs(params)
    if not pairs:
        return url
    parts = urlsplit(url)
    query = parts.query + ('&' if parts.query else '') + urlencode(pairs)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ''))


def base_url(url):
    """scheme://netloc/path: the URL without query and fragment (what V2 and docs-V3 sign). Like the
    SDK validators (urlparse), a ';params' path suffix is dropped too."""
    parts = urlparse(url)
    return urlunparse((parts.scheme, parts.netloc, parts.path, '', '', ''))


def signature_v1(url, params, auth_token):
    """Plivo V1: full URL followed by the sorted key+value concatenation of the POST params."""
    message = url + ''.join(k + v for k, v in sorted(param_pairs(params)))
    return _b64_hmac(auth_token, message, hashlib.sha1)


def signature_v2(url, nonce, auth_token):
    return _b64_hmac(auth_token, base_url(url) + str(nonce), hashlib.sha256)


def signature_v3_docs(url, nonce, auth_token):
    return _b64_hmac(auth_token, base_url(url) + '.' + str(nonce), hashlib.sha256)


def _grouped(pairs):
    grouped = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    return grouped


def sdk_v3_base_string(url, params, method):
    """The string the vobiz-python/plivo SDK V3 validator signs, before the final '.' + nonce.

    GET: baseURL + '?' + sorted 'k=v&...' of the query merged with params (query wins).
    POST: baseURL, then '?' + sorted query + '.' when the URL has a query, or '?' when it has none but
    there are params; then the sorted key+value concatenation of the params.
    """
    parts = urlsplit(url)
    base = base_url(url)
    query = {k: v for k, v in parse_qs(parts.query, keep_blank_values=True).items()}

    def sorted_query(mapping):
        chunks = []
        for key in sorted(mapping):
            values = mapping[key]
            if isinstance(values, list):
                chunks.append('&'.join('{}={}'.format(key, v) for v in sorted(values)))
            else:
                chunks.append('{}={}'.format(key, values))
        return '&'.join(chunks)

    pairs = param_pairs(params)
    if method.upper() == 'GET':
        merged = {k: (v if len(v) > 1 else v[0]) for k, v in _grouped(pairs).items()}
        merged.update(query)
        qs = sorted_query(merged)
        return base + ('?' + qs if qs else '')
    has_params = bool(pairs)
    qs = sorted_query(query)
    if has_params:
        base += '?' + qs
        if qs:
            base += '.'
    elif qs:
        base += '?' + qs
    grouped = _grouped(pairs)
    chunks = []
    for key in sorted(grouped):
        values = grouped[key]
        if len(values) > 1:
            chunks.append(''.join(key + v for v in sorted(values)))
        else:
            chunks.append(key + values[0])
    return base + ''.join(chunks)


def signature_v3_sdk(url, params, nonce, auth_token, method='POST'):
    message = sdk_v3_base_string(url, params, method) + '.' + str(nonce)
    # The SDK turns the UTF-8 bytes back into text one byte per character before signing; do the same.
    message = message.encode('utf-8').decode('latin-1').encode('utf-8')
    return _b64_hmac(auth_token, message, hashlib.sha256)


def sign_headers(url, params, auth_token, method='POST', nonce_v2=None, nonce_v3=None, v3_mode='docs',
                 parent_auth_token=None):
    """All X-Vobiz-Signature* headers for a request to the configured `url` with `params`.

    POST: params are the form body. GET: params go into the query string (`with_query`), so V1 signs
    that full URL and the SDK-form V3 signs the merged query. V2 and docs-V3 never depend on params.
    """
    if v3_mode not in V3_MODES:
        raise ValueError('v3_mode must be one of %s, not %r' % (V3_MODES, v3_mode))
    if not auth_token:
        raise ValueError('sign_headers needs an auth token')
    method = (method or 'POST').upper()
    nonce_v2 = str(nonce_v2) if nonce_v2 is not None else new_nonce()
    if nonce_v3 is not None:
        nonce_v3 = str(nonce_v3)  # explicit nonces are used as given (test vectors use one for both)
    else:
        nonce_v3 = new_nonce()
        while nonce_v3 == nonce_v2:
            nonce_v3 = new_nonce()
    if method == 'GET':
        v1 = signature_v1(with_query(url, params), None, auth_token)
    else:
        v1 = signature_v1(url, params, auth_token)
    parent = parent_auth_token or auth_token

    def v3(token):
        if v3_mode == 'sdk':
            if method == 'GET':  # sign the query the receiver will see (params appended to it)
                return signature_v3_sdk(with_query(url, params), None, nonce_v3, token, method)
            return signature_v3_sdk(url, params, nonce_v3, token, method)
        return signature_v3_docs(url, nonce_v3, token)

    return {
        'X-Vobiz-Signature': v1,
        'X-Vobiz-Signature-V2': signature_v2(url, nonce_v2, auth_token),
        'X-Vobiz-Signature-V2-Nonce': nonce_v2,
        'X-Vobiz-Signature-V3': v3(auth_token),
        'X-Vobiz-Signature-V3-Nonce': nonce_v3,
        'X-Vobiz-Signature-MA-V2': signature_v2(url, nonce_v2, parent),
        'X-Vobiz-Signature-MA-V3': v3(parent),
    }


def _equal(expected, received):
    if not received:
        return False
    candidates = [s.strip() for s in str(received).split(',')]
    return any(hmac.compare_digest(expected.encode('ascii'), c.encode('utf-8', 'replace')) for c in candidates)


def verify_v2(url, nonce, signature, auth_token):
    """True if `signature` (X-Vobiz-Signature-V2, comma-separated list allowed) matches url + nonce."""
    if not nonce or not auth_token:
        return False
    return _equal(signature_v2(url, nonce, auth_token), signature)


def verify_v3(url, nonce, signature, auth_token, params=None, method='POST', v3_mode='docs'):
    """True if `signature` (X-Vobiz-Signature-V3) matches, in the docs form or the SDK form."""
    if not nonce or not auth_token:
        return False
    if v3_mode == 'sdk':
        expected = signature_v3_sdk(url, params, nonce, auth_token, method)
    elif v3_mode == 'docs':
        expected = signature_v3_docs(url, nonce, auth_token)
    else:
        raise ValueError('v3_mode must be one of %s, not %r' % (V3_MODES, v3_mode))
    return _equal(expected, signature)
