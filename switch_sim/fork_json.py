"""JSON as mod_audio_fork's cJSON sees it: `cjson_parse` (leading whitespace skipped, trailing text
ignored; objects keep key order and duplicates, as a `JObject` whose lookups are case-insensitive),
`cjson_print` (cJSON_PrintUnformatted, the compact form the module re-prints event data in) and
`message_type` (parse_json in parser.cpp).
"""
from __future__ import annotations

import json

class JObject(list):
    """A JSON object as cJSON holds it: an ordered list of (key, value) pairs."""

    def get_item(self, key: str):
        k = key.lower()
        for name, value in self:
            if name.lower() == k:
                return value
        return None

    def detach(self, key: str):
        k = key.lower()
        for i, (name, value) in enumerate(self):
            if name.lower() == k:
                del self[i]
                return value
        return None


def _reject_constant(name):
    raise ValueError('not JSON: %s' % name)


_decoder = json.JSONDecoder(object_pairs_hook=JObject, parse_constant=_reject_constant)


def cjson_parse(text: str):
    """cJSON_Parse: leading whitespace skipped, trailing text ignored. Raises ValueError."""
    i = 0
    while i < len(text) and ord(text[i]) <= 32:
        i += 1
    value, _ = _decoder.raw_decode(text, i)
    return value


def _print_number(v) -> str:
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, int):
        if -2 ** 31 <= v < 2 ** 31:
            return str(v)
        v = float(v)
    if v != v or v in (float('inf'), float('-inf')):
        return 'null'
    if v == int(v) and abs(v) < 1e15:
        return str(int(v)) if -2 ** 31 <= int(v) < 2 ** 31 else '%1.15g' % v
    s = '%1.15g' % v
    if float(s) != v:
        s = '%1.17g' % v
    return s


def cjson_print(value) -> str:
    """cJSON_PrintUnformatted."""
    if value is None:
        return 'null'
    if value is True:
        return 'true'
    if value is False:
        return 'false'
    if isinstance(value, (int, float)):
        return _print_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, JObject):
        return '{' + ','.join('%s:%s' % (json.dumps(k, ensure_ascii=False), cjson_print(v)) for k, v in value) + '}'
    if isinstance(value, list):
        return '[' + ','.join(cjson_print(v) for v in value) + ']'
    return json.dumps(value)


def message_type(msg) -> str:
    """parse_json in parser.cpp: the string "type" field, else "json"."""
    if isinstance(msg, JObject):
        t = msg.get_item('type')
        if isinstance(t, str):
            return t
    return 'json'
