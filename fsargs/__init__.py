"""fsargs: free text as one argument of a space-separated FreeSWITCH API command (`uuid_setvar`,
`uuid_audio_fork ... send_text`, ...). A leaf package: it imports nothing of ours, so esl_app and
audio_fork, which may not import each other, both use it.

What FreeSWITCH 1.10.12 does to such a command (src/switch_utils.c; mod_event_socket.c for `api`):
- mod_event_socket reads the command up to a `\\n` (and treats `\\r` as a line end too), so neither
  may appear literally; switch_api_execute trims blanks (space, `\\t`, `\\n`, `\\r`, `\\v`) from
  both ends of the argument string;
- the module splits it with switch_separate_string(' '): blanks outside single quotes separate
  arguments, a backslash makes the next character ordinary, and `^^X` at the very start of the
  string makes X the delimiter;
- cleanup_separated_string then, in every argument: drops leading and trailing blanks, drops single
  quotes (a lone quote with no partner after it stays), and turns `\\'`, `\\"`, `\\\\` into the
  character and `\\n \\r \\t \\s` into newline, carriage return, tab and space; a backslash before
  anything else stays as it is.
"""

__all__ = ["quote_api_arg"]

_ESCAPES = {"\\": "\\\\", "'": "\\'", " ": "\\s", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote_api_arg(text: str) -> str:
    """`text` written as one argument of a space-separated FreeSWITCH API command, such that
    FreeSWITCH's splitting and cleanup give back exactly `text`, wherever the argument stands
    (first, in the middle, or last, where a module may take the unsplit remainder).

    Backslash, single quote, space, newline, carriage return and tab are backslash-escapes (`\\s`
    for a space); everything else, non-ASCII text included, is left as is. A leading `^^` gets
    its first `^` quoted (`'^'^...`), so it cannot switch the delimiter when the argument comes
    first. The empty text is `''` (an empty argument). Any other control character (U+0000 to
    U+001F, U+007F) raises ValueError: FreeSWITCH has no escape for them, NUL would end the C
    string and `\\v` is trimmed at the ends, so the text could not arrive unchanged.
    """
    text = str(text)
    if not text:
        return "''"
    out = []
    for ch in text:
        escaped = _ESCAPES.get(ch)
        if escaped is not None:
            out.append(escaped)
        elif ch < " " or ch == "\x7f":
            raise ValueError(f"control character {ch!r} cannot be passed in a FreeSWITCH API argument")
        else:
            out.append(ch)
    if text.startswith("^^"):
        out[0] = "'^'"
    return "".join(out)
