"""One webhook as the outbox stores it: its checked URL and method, its encoded body, its keys.

A URL or method that can never be sent makes a row that is `failed` at once, with the reason (it is
stored, never dropped, so listings show what went wrong); params that cannot be encoded are the
caller's mistake and raise ValueError.
"""
import json
import time
import uuid

from .outbox_table import FAILED, PENDING, host_of
from .signing import SIGNERS, param_pairs
from .urls import UrlError, clean_url


def new_row(call_uuid, url, method, params, *, encoding, event, max_attempts, allow_private, signer='vobiz'):
    if signer not in SIGNERS:
        raise ValueError('signer must be one of %s, not %r' % (', '.join(SIGNERS), signer))
    if encoding not in ('form', 'json'):
        raise ValueError('encoding must be "form" or "json", not %r' % (encoding,))
    call_uuid = str(call_uuid or '')
    key = str(uuid.uuid4())
    method_text = str(method or 'POST').upper()
    status, error, target = PENDING, None, url if isinstance(url, str) else repr(url)
    if method_text not in ('GET', 'POST'):
        status, error = FAILED, 'bad method %r (GET or POST)' % (method,)
    else:
        try:
            target = clean_url(url, allow_private=allow_private)
        except UrlError as exc:
            status, error = FAILED, 'bad_url: %s' % (exc,)
    try:
        if encoding == 'form':
            body = json.dumps(param_pairs(params))
        else:
            body = json.dumps(params, default=str)
    except (TypeError, ValueError) as exc:
        raise ValueError('webhook params must be a dict or a list of pairs (form) or JSON data: %s'
                         % (exc,)) from None
    return {'call_uuid': call_uuid, 'order_key': call_uuid or 'delivery:' + key, 'event': event,
            'url': target, 'host': host_of(target), 'method': method_text, 'encoding': encoding, 'signer': signer,
            'body': body, 'key': key, 'idempotency_key': key, 'status': status, 'error': error,
            'max_attempts': max_attempts, 'created_at': time.time()}
