"""fsargs.quote_api_arg: what FreeSWITCH 1.10.12 gives back for a quoted argument, wherever it stands
in a space-separated API command. The model below is a port of the C code the text goes through,
written from FreeSWITCH 1.10.12's sources, independent of fsargs:
- mod_event_socket.c: `api <cmd> <arg>` ends at the first newline (a `\\r` ends it too);
- switch_loadable_module.c switch_api_execute: switch_strip_whitespace(arg) (space, \\t, \\n, \\v, \\r
  at both ends);
- switch_utils.c switch_separate_string (`^^X` prefix) -> separate_string_blank_delim ->
  cleanup_separated_string(arg, 0) on every argument.
"""
import random

import pytest

from fsargs import quote_api_arg

ESCAPE_META = "\\"
UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", "s": " "}


def strip_whitespace(s: str) -> str:
    return s.strip(" \t\n\x0b\r")


def cleanup_separated_string(s: str, delim: str | None = None) -> str:
    """switch_utils.c cleanup_separated_string on one NUL-terminated argument."""
    ptr = 0
    while ptr < len(s) and s[ptr] == " ":
        ptr += 1
    dest: list = []
    end = None
    inside_quotes = False
    while ptr < len(s):
        esc = False
        if s[ptr] == ESCAPE_META:
            e = s[ptr + 1] if ptr + 1 < len(s) else "\0"
            if e in ("'", '"', ESCAPE_META) or (delim and e == delim) or UNESCAPE.get(e, e) != e:
                ptr += 1
                dest.append(UNESCAPE.get(e, e))
                end = len(dest)
                esc = True
        if not esc:
            if s[ptr] == "'" and (inside_quotes or "'" in s[ptr + 1:]):
                inside_quotes = not inside_quotes
                if inside_quotes:
                    end = len(dest)
            else:
                dest.append(s[ptr])
                if s[ptr] != " " or inside_quotes:
                    end = len(dest)
        ptr += 1
    if end is None:   # C: no terminator written; only reachable when nothing but blanks was copied
        return "".join(dest)
    return "".join(dest[:end])


def separate_string(buf: str, arraylen: int) -> list:
    """switch_separate_string(buf, ' ', argv, arraylen) for the blank delimiter: the slots, the last
    one keeping the unsplit rest of the line."""
    if buf.startswith("^^") and len(buf) >= 4:
        raise AssertionError("the ^^ prefix switched the delimiter to %r" % buf[2])
    starts, ends = [], []
    ptr, state, inside_quotes = 0, "START", False
    while ptr < len(buf) and len(starts) < arraylen:
        c = buf[ptr]
        if state == "START":
            starts.append(ptr)
            state = "SKIP_INITIAL_SPACE"
        elif state == "SKIP_INITIAL_SPACE":
            if c == " ":
                ptr += 1
            else:
                state = "FIND_DELIM"
        elif state == "FIND_DELIM":
            if c == ESCAPE_META:
                ptr += 1
            elif c == "'":
                inside_quotes = not inside_quotes
            elif c == " " and not inside_quotes:
                ends.append(ptr)
                state = "SKIP_ENDING_SPACE"
            ptr += 1
        else:
            if c == " ":
                ptr += 1
            else:
                state = "START"
    ends += [len(buf)] * (len(starts) - len(ends))
    return [cleanup_separated_string(buf[s:e]) for s, e in zip(starts, ends)]


def api_args(line: str, arraylen: int) -> list:
    """What an API function splitting its argument into `arraylen` slots receives for `api line`."""
    assert "\n" not in line and "\r" not in line, "the ESL command line would end early"
    cmd, _, arg = line.partition(" ")
    return separate_string(strip_whitespace(arg), arraylen)


def test_the_model_follows_the_c_source():
    assert cleanup_separated_string(r"a\\b") == "a\\b"           # e == ESCAPE_META
    assert cleanup_separated_string(r"a\db") == r"a\db"          # any other backslash stays
    assert cleanup_separated_string("it's") == "it's"            # a lone quote has no partner: kept
    assert cleanup_separated_string("'a b'") == "a b"
    assert cleanup_separated_string("''") == ""
    assert cleanup_separated_string(r"\s\t\n\r\"\'") == " \t\n\r\"'"
    assert cleanup_separated_string("  x  ") == "x"
    assert separate_string("a 'b c' d", 10) == ["a", "b c", "d"]
    assert separate_string("a b c d", 3) == ["a", "b", "c d"]      # the last slot keeps the rest
    assert separate_string(r"a b\ c", 10) == ["a", r"b\ c"]        # `\ ` does not split, nor unescape


TEXTS = [
    "plain", "a b", " lead", "trail ", "  both  ", " ", "   ", "it's", "'", "''", "' '", "'quoted'",
    '"double"', '"', 'say "hi" to \'them\'', "back\\slash", "\\", "\\\\", "end\\", "\\s", "\\n",
    "\\'", "\\\"", "line1\nline2", "\n", "\r\n", "cr\r", "\ttab\t", "tab\tin", "mixed \t\n\r '\"\\ all",
    "é€ 日本語 🎉", "\u2028 and \u0085", "${uuid} $${base_dir} \\${x}", "a=b;c=d", "{\"json\": [1, \" \"]}",
    "^", "^^", "^^:", "^^:a:b", "^^ x", "x^^y", "%[x]", "100%",
]


@pytest.mark.parametrize("text", TEXTS)
def test_every_position_gives_the_text_back(text):
    q = quote_api_arg(text)
    assert "\n" not in q and "\r" not in q and " " not in q
    # last: uuid_setvar <uuid> <name> <value> (3 slots, the value is the rest of the line)
    assert api_args("uuid_setvar u-1 note " + q, 3) == ["u-1", "note", text]
    # in the middle, followed by more arguments (uuid_audio_fork: 10 slots)
    assert api_args("uuid_audio_fork u-1 send_text bug " + q + " after", 10) == ["u-1", "send_text", "bug", text, "after"]
    # first
    assert api_args("cmd " + q + " second", 10) == [text, "second"]
    # alone
    assert api_args("cmd " + q, 10) == [text]


def test_what_is_escaped_and_what_is_not():
    assert quote_api_arg("a b") == r"a\sb"
    assert quote_api_arg("it's") == r"it\'s"
    assert quote_api_arg("a\\b") == r"a\\b"
    assert quote_api_arg("1\n2\r3\t4") == r"1\n2\r3\t4"
    assert quote_api_arg('"x" é ${y}') == r'"x"\sé\s${y}'      # nothing FreeSWITCH's splitting changes
    assert quote_api_arg("") == "''"
    assert quote_api_arg("^^:a") == "'^'^:a"


@pytest.mark.parametrize("ch", [chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"] + ["\x7f"])
def test_control_characters_are_refused(ch):
    with pytest.raises(ValueError, match="control character"):
        quote_api_arg("a" + ch + "b")


def test_random_text_round_trips():
    rng = random.Random(1012)
    alphabet = " '\"\\\n\r\tsnrt^${}é€ab"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        q = quote_api_arg(text)
        assert api_args("uuid_setvar u-1 v " + q, 3)[2:] == [text], (text, q)
        assert api_args("x " + q + " y", 10) == [text, "y"], (text, q)


def test_the_callers_use_it():
    from audio_fork.command import escape_arg, fork_send_text
    assert escape_arg("a b") == quote_api_arg("a b")
    assert api_args(fork_send_text("u-1", "bug", "it's \\ done\n"), 10)[3] == "it's \\ done\n"
    with pytest.raises(ValueError):
        escape_arg("")              # the module has nothing to send
    with pytest.raises(ValueError):
        escape_arg("bell\x07")
