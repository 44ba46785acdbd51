"""switch_separate_string: how FreeSWITCH splits app and API arguments (a port of the C code in
switch_utils.c, with its cleanup_separated_string), pinned to FreeSWITCH 1.10.12 by
tests/fixtures/fs-captures/api-argsplit.json.

Space-delimited; single quotes group (and are stripped; in a part, a quote with no partner after it
stays); a backslash escapes a quote, a backslash, the delimiter or \\n \\r \\t \\s (other
backslashes are kept, so a regex like ``\\d+`` survives; ``\\ `` does not split, and stays); a
leading ``^^X`` switches the delimiter to X; once `max_parts` is reached the last part gets the
unsplit remainder. Used by the API commands, the dialplan apps and the mod_audio_fork emulation
(7 or 10 slots). `create_brackets` reads a `{name=value,...}` block (switch_event_create_brackets:
originate's channel variables, record_session's and uuid_record's recording variables).
`api_command` is what mod_event_socket and switch_api_execute make of an `api` line before the
command sees it. Also `atoi`, how FreeSWITCH and its modules read a number from an argument or a
variable.
"""
from __future__ import annotations

import re


def _unescape_char(c: str) -> str:
    return {'n': '\n', 'r': '\r', 't': '\t', 's': ' '}.get(c, c)


def _quote_follows(buf: list, ptr: int) -> bool:
    """strchr(ptr + 1, '\'') on the NUL-terminated string in buf."""
    i = ptr + 1
    while buf[i] != '\0':
        if buf[i] == "'":
            return True
        i += 1
    return False


def _cleanup(buf: list, start: int, delim: str | None) -> str:
    """cleanup_separated_string on the NUL-terminated token at buf[start:] (modified in place, as
    in C): leading spaces skipped; `\\'` `\\"` `\\\\` and `\\<delim>` give the character, `\\n` `\\r`
    `\\t` `\\s` newline, CR, tab, space, a backslash before anything else stays; a single quote
    with a partner after it (or closing one) toggles quoting and is dropped, a lone one is kept;
    trailing spaces outside quotes are dropped."""
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
            e = nxt if nxt in ("'", '"', '\\') or (delim and nxt == delim) else _unescape_char(nxt)
            if e != nxt or nxt in ("'", '"', '\\') or (delim and nxt == delim):
                ptr += 1
                buf[dest] = e
                dest += 1
                end = dest
                esc = True
        if not esc:
            if buf[ptr] == "'" and (inside_quotes or _quote_follows(buf, ptr)):
                inside_quotes = not inside_quotes
                if inside_quotes:
                    end = dest
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
                elif c == "'" and (inside_quotes or _quote_follows(buf, ptr)):
                    inside_quotes = not inside_quotes
                elif c == delim and not inside_quotes:
                    buf[ptr] = '\0'
                    state = 'start'
                ptr += 1
        cleanup_delim = delim
    return [_cleanup(buf, s, cleanup_delim) for s in starts]


def find_end_paren(text: str, open_: str, close: str) -> int | None:
    """switch_find_end_paren: after leading spaces `text` must open with `open_`; the index of the
    `close` that matches it (nested `open_`s counted), or None."""
    i = 0
    while i < len(text) and text[i] == ' ':
        i += 1
    if i >= len(text) or text[i] != open_:
        return None
    depth = 1
    for j in range(i + 1, len(text)):
        if text[j] == open_ and open_ != close:
            depth += 1
        elif text[j] == close:
            depth -= 1
            if not depth:
                return j
    return None


def create_brackets(text: str, open_: str = '{', close: str = '}', delim: str = ',') -> tuple[dict, str] | None:
    """switch_event_create_brackets on `text` (which starts with `open_`): the variables of the block
    and what follows it; None when the block is not closed (FreeSWITCH's parse error).

    The block ends at the matching `close` (nesting counted, no escape for it); a leading `^^X`
    makes X the separator; the block is split on the separator with switch_separate_string (quotes
    group, `\\\\<separator>` is the character, then cleanup_separated_string), and each part on its
    first `=` the same way ('=' as the delimiter: two slots, the value is the rest); a part without
    `=` or with nothing after it sets nothing; a later name replaces an earlier one."""
    end = find_end_paren(text, open_, close)
    if end is None:
        return None
    body = text[1:end]
    if body.startswith('^^') and len(body) > 2:
        delim, body = body[2], body[3:]
    variables: dict = {}
    for item in separate_string(body, delim=delim, max_parts=1024):
        pair = separate_string(item, delim='=', max_parts=2)
        if len(pair) == 2:
            variables.pop(pair[0], None)
            variables[pair[0]] = pair[1]
    return variables, text[end + 1:]


_BLANKS = ' \t\n\x0b\r'      # switch_strip_whitespace: not \f, nor any non-ASCII space


def api_command(text: str) -> tuple[str, str]:
    """What `api <text>` (or `bgapi <text>`) on the event socket hands to the command:
    mod_event_socket ends the line at its first \\r or \\n (strip_cr) and splits it at the first
    space; switch_api_execute trims blanks (space, \\t, \\n, \\v, \\r) from both ends of each
    half. -> (command, argument)."""
    for i, ch in enumerate(text):
        if ch in '\r\n':
            text = text[:i]
            break
    command, _, argument = text.partition(' ')
    return command.strip(_BLANKS), argument.strip(_BLANKS)


def atoi(value) -> int:
    """C's atoi on a string (or None): leading blanks, a sign and digits; 0 when there are none;
    clamped to a 32-bit int."""
    m = re.match(r'\s*([+-]?\d+)', str(value or ''))
    if not m:
        return 0
    return max(min(int(m.group(1)), 2 ** 31 - 1), -2 ** 31)
