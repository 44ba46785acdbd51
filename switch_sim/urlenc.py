"""FreeSWITCH URL encoding, as `switch_url_encode_opt` (switch_utils.c) does it for event headers.

Rule: every byte < 0x20 or > 0x7E, or in SWITCH_URL_UNSAFE (``\\r\\n #%&+:;<=>?@[\\]^`{|}"``), becomes
``%XX`` (uppercase hex), EXCEPT a ``%`` that is already followed by two hex digits: it is passed through
(no double encoding). The input is encoded as UTF-8 first, so each byte of a multi-byte character is
encoded separately. ``url_decode`` is the inverse used when reading values back.
"""
from __future__ import annotations

import re

SWITCH_URL_UNSAFE = '\r\n #%&+:;<=>?@[\\]^`{|}"'
_HEX = set(b'0123456789abcdefABCDEF')
_UNSAFE_BYTES = frozenset(SWITCH_URL_UNSAFE.encode('ascii'))


def _needs_encoding(byte: int) -> bool:
    return byte < 0x20 or byte > 0x7E or byte in _UNSAFE_BYTES


_SAFE_TEXT = re.compile(r'[\x21-\x7e]*')


def url_encode(value: str) -> str:
    """Encode `value` exactly like switch_url_encode_opt(..., double_encode=SWITCH_FALSE)."""
    if _SAFE_TEXT.fullmatch(value) and not any(c in value for c in SWITCH_URL_UNSAFE):
        return value
    data = value.encode('utf-8', 'surrogateescape')
    out = []
    n = len(data)
    for i, byte in enumerate(data):
        if byte == 0x25 and i + 2 < n and data[i + 1] in _HEX and data[i + 2] in _HEX:
            out.append('%')
        elif _needs_encoding(byte):
            out.append('%%%02X' % byte)
        else:
            out.append(chr(byte))
    return ''.join(out)


def url_decode(value: str) -> str:
    """Decode %XX sequences (as switch_url_decode does); invalid escapes are left as they are."""
    if '%' not in value:
        return value
    raw = value.encode('utf-8', 'surrogateescape')
    out = bytearray()
    i = 0
    n = len(raw)
    while i < n:
        b = raw[i]
        if b == 0x25 and i + 2 < n and raw[i + 1] in _HEX and raw[i + 2] in _HEX:
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(b)
            i += 1
    return out.decode('utf-8', 'replace')
