"""switch_separate_string: how FreeSWITCH splits app and API arguments.

Space-delimited; single quotes group (and are stripped); a backslash escapes a following quote or delimiter (other backslashes are kept, so a regex like
``\\d+`` survives);
a leading ``^^X`` switches the delimiter to X; once `max_parts` is reached the last part gets the
unsplit remainder.
"""
from __future__ import annotations


def separate_string(text: str, delim: str = ' ', max_parts: int | None = None) -> list[str]:
    text = text or ''
    if text.startswith('^^') and len(text) > 2:
        delim = text[2]
        text = text[3:]
    parts: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        while i < n and text[i] == delim:
            i += 1
        if i >= n:
            break
        if max_parts is not None and len(parts) == max_parts - 1:
            rest = text[i:]
            if len(rest) >= 2 and rest[0] == "'" and rest[-1] == "'":
                rest = rest[1:-1]
            parts.append(rest)
            break
        buf = []
        quoted = False
        while i < n:
            ch = text[i]
            if ch == '\\' and i + 1 < n and text[i + 1] in ("'", delim):
                buf.append(text[i + 1])
                i += 2
                continue
            if ch == "'":
                quoted = not quoted
                i += 1
                continue
            if ch == delim and not quoted:
                break
            buf.append(ch)
            i += 1
        parts.append(''.join(buf))
    return parts
