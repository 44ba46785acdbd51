"""Helpers for the REST API tests: a JSON error reply checked, and the Prometheus text format of
/metrics parsed strictly (every line a comment or a sample, every sample after its # TYPE)."""
import re


def error_json(resp, status):
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert body["error"] and body["api_id"]
    return body


# -- Prometheus text format: every line is a comment (# HELP / # TYPE) or `name{labels} value` -----
PROM_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
                         r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? '
                         r'([-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|NaN|[-+]?Inf))( -?[0-9]+)?$')
PROM_META = re.compile(r'^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* '
                       r'(counter|gauge|histogram|summary|untyped))$')


def parse_metrics(text: str) -> dict:
    assert text.endswith("\n")
    values, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("#"):
            m = PROM_META.match(line)
            assert m, f"bad metadata line: {line!r}"
            if line.startswith("# TYPE"):
                typed.add(line.split()[2])
            continue
        m = PROM_SAMPLE.match(line)
        assert m, f"bad sample line: {line!r}"
        assert m.group(1) in typed, f"sample before its # TYPE: {line!r}"
        values[m.group(1)] = float(m.group(3))
    return values
