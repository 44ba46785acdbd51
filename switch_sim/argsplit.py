"""switch_separate_string: how FreeSWITCH splits app and API arguments (a port of the C code in
switch_utils.c, with its cleanup_separated_string).

Space-delimited; single quotes group (and are stripped); a backslash escapes a quote, the delimiter
or \\n \\r \\t \\s (other backslashes are kept, so a regex like ``\\d+`` survives); a leading
``^^X`` switches the delimiter to X; once `max_parts` is reached the last part gets the unsplit
remainder. Used by the dialplan apps and by the mod_audio_fork emulation (7 or 10 slots).
Also `atoi`, how FreeSWITCH and its modules read a number from an argument or a variable.
"""
from __future__ import annotations

import re



def _unescape_char(c: str) -> str:
    return {'n': '\n', 'r': '\r', 't': '\t', 's': ' '}.get(c, c)


def _cleanup(buf: list, start: int, delim: str | None) -> str:
    """cleanup_separated_string on the NUL-terminated token at buf[start:] (modified in place)."""
    ptr = start
    while buf[ptr] == ' ':
        ptr += 1
    first = dest = ptr
    end = None
    inside_quotes = False
    while buf[ptr] != '\0':
        esc = False
        if buf[ptr] == '\\':
            nxt = buf[ptr + 1]
            if nxt == "'" or nxt == '"' or (delim and nxt == delim) or _unescape_char(nxt) != nxt:
                e = nxt if (nxt in ("'", '"') or (delim and nxt == delim)) else _unescape_char(nxt)
                ptr += 1
                buf[dest] = e
                dest += 1
                end = dest
                esc = True
        if not esc:
            if buf[ptr] == "'":
                inside_quotes = not inside_quotes
            else:
                buf[dest] = buf[ptr]
                dest += 1
                if buf[ptr] != ' ' or inside_quotes:
                    end = dest
        ptr += 1
    if end is not None:
        buf[end] = '\0'
    out = []
    i = first
    while buf[i] != '\0':
        out.append(buf[i])
        i += 1
    return ''.join(out)


def separate_string(cmd: str, delim: str = ' ', max_parts: int | None = None) -> list[str]:
    """switch_separate_string(cmd, delim, argv, max_parts): the list of arguments (unbounded when
    `max_parts` is None)."""
    max_slots = 4096 if max_parts is None else max_parts
    if not cmd or max_slots <= 0:
        return []
    buf = list(cmd) + ['\0', '\0']
    ptr = 0
    if buf[0] == '^' and buf[1] == '^' and buf[2] != '\0' and buf[3] != '\0':
        delim = buf[2]
        ptr = 3
    starts = []
    inside_quotes = False
    if delim == ' ':
        state = 'start'
        while buf[ptr] != '\0' and len(starts) < max_slots:
            c = buf[ptr]
            if state == 'start':
                starts.append(ptr)
                state = 'skip_initial'
            elif state == 'skip_initial':
                if c == ' ':
                    ptr += 1
                else:
                    state = 'find'
            elif state == 'find':
                if c == '\\':
                    ptr += 1
                elif c == "'":
                    inside_quotes = not inside_quotes
                elif c == ' ' and not inside_quotes:
                    buf[ptr] = '\0'
                    state = 'skip_ending'
                ptr += 1
            else:  # skip_ending
                if c == ' ':
                    ptr += 1
                else:
                    state = 'start'
        cleanup_delim = None
    else:
        state = 'start'
        while buf[ptr] != '\0' and len(starts) < max_slots:
            c = buf[ptr]
            if state == 'start':
                starts.append(ptr)
                state = 'find'
            else:
                if c == '\\':
                    ptr += 1
                elif c == "'" and (inside_quotes or "'" in ''.join(buf[ptr + 1:]).split('\0', 1)[0]):
                    inside_quotes = not inside_quotes
                elif c == delim and not inside_quotes:
                    buf[ptr] = '\0'
                    state = 'start'
                ptr += 1
        cleanup_delim = delim
    return [_cleanup(buf, s, cleanup_delim) for s in starts]


def atoi(value) -> int:
    """C's atoi on a string (or None): leading blanks, a sign and digits; 0 when there are none;
    clamped to a 32-bit int."""
    m = re.match(r'\s*([+-]?\d+)', str(value or ''))
    if not m:
        return 0
    return max(min(int(m.group(1)), 2 ** 31 - 1), -2 ** 31)
