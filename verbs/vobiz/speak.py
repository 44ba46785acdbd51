"""<Speak>: text-to-speech; keeps SSML children and reduces them to speakable text."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..base import Attr, AttrError, Custom, Int, Text
from .element import VobizVerb

SPEAK_LANGUAGES = ("da-DK", "nl-NL", "en-AU", "en-GB", "en-US", "fr-FR", "fr-CA", "de-DE", "it-IT",
                   "pl-PL", "pt-PT", "pt-BR", "ru-RU", "es-ES", "es-US", "sv-SE")
SSML_TAGS = ("break", "cont", "emphasis", "lang", "p", "phoneme", "prosody", "s", "say-as", "sub", "w")
PAUSE = "\u2026"   # what a <break> becomes in speakable_text() unless told otherwise


def _voice(raw, warnings):
    if not isinstance(raw, str) or not raw.strip():
        raise AttrError("must be WOMAN, MAN or a provider voice such as Polly.Amy")
    value = raw.strip()
    if value.upper() in ("WOMAN", "MAN"):
        return value.upper()
    if re.fullmatch(r"[A-Za-z]+\.[A-Za-z0-9_\-]+", value):
        return value
    raise AttrError(f'"{value}" is not a voice; allowed: WOMAN, MAN, or a provider voice such as Polly.Amy')


@dataclass
class SsmlNode:
    """One SSML element inside <Speak>: tag, attributes, children (str or SsmlNode)."""
    tag: str
    attrs: dict
    children: list = field(default_factory=list)


class Speak(VobizVerb):
    name = "Speak"
    TEXT = "text"
    TEXT_REQUIRED = True
    ATTRIBUTES = (
        Attr("voice", "voice", Custom(_voice, "WOMAN|MAN|Polly.*"), "WOMAN"),
        Attr("language", "language", Text(pattern=r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*",
                                          pattern_desc="a language tag such as en-US"), "en-US"),
        Attr("loop", "loop", Int(minimum=0), 1),   # 0 = forever
    )
    FIXED = {"ssml": False, "content": None}    # content: list of str | SsmlNode, set by the parser

    def read_content(self, element, ctx) -> None:
        self.content = _read_ssml(element, ctx, self)   # list of str | SsmlNode
        self.ssml = any(isinstance(c, SsmlNode) for c in self.content)
        self.text = _plain(self.content).strip()
        if not self.speakable_text():
            ctx.error(self, "there is nothing to speak (the text is empty)")

    def speakable_text(self, pause: str = PAUSE) -> str:
        """The text to synthesise with SSML reduced: say-as spelled out when asked, sub → alias,
        break → `pause`, other tags → their text; whitespace collapsed."""
        content = self.content if self.content is not None else [self.text]
        return re.sub(r"\s+", " ", _speakable(content, pause)).strip()

    def check(self):
        if self.ok("voice", "language") and self.voice in ("WOMAN", "MAN") and self.language not in SPEAK_LANGUAGES:
            return [f"language: \"{self.language}\" is not available for voice {self.voice}; "
                    f"allowed: {', '.join(SPEAK_LANGUAGES)}"]
        return []

    def summary_text(self) -> str:
        text = self.speakable_text()
        return repr(text if len(text) <= 50 else text[:47] + "...")

    # -- execution ---------------------------------------------------------------------------
    def run(self, call) -> None:
        """`speak flite|<voice>|<text>` (mod_flite), `loop` times; loop=0 repeats until hangup."""
        call.ensure_answered()
        voice = call.tts_voice(self.voice, self.language)
        text = self.speakable_text(pause=",")
        count = 0
        while self.loop == 0 or count < self.loop:
            # checked before each `speak` too: a transfer (uuid_break) that lands between the
            # verb's start and FreeSWITCH running the app would otherwise not stop it
            if call.interrupted.is_set() or call.barged_in():
                return
            call.session.execute("speak", f"flite|{voice}|{text}")
            count += 1


def _read_ssml(element, ctx, verb) -> list:
    out: list = []
    if element.text:
        out.append(element.text)
    for child in element:
        tag = ctx.local_name(child)
        if tag not in SSML_TAGS:
            if tag in ctx.verb_names():
                ctx.error_at(child, tag, f"<{tag}> is not allowed inside <{verb.name}>; "
                             f"allowed: text and SSML ({', '.join(SSML_TAGS)})")
            else:
                ctx.error_at(child, tag, f"unknown SSML element {tag} inside <{verb.name}>; "
                             f"allowed: {', '.join(SSML_TAGS)}")
        else:
            attrs = {ctx.local_name_of(k): v for k, v in child.attrib.items()}
            if tag == "sub" and "alias" not in attrs:
                ctx.error_at(child, tag, "alias is required")
            if tag == "break":
                _check_break(attrs, child, ctx)
            out.append(SsmlNode(tag, attrs, _read_ssml(child, ctx, verb)))
        if child.tail:
            out.append(child.tail)
    return out


def _check_break(attrs, child, ctx):
    time = attrs.get("time")
    if time is not None and not re.fullmatch(r"\s*\d+(\.\d+)?\s*(ms|s)\s*", time):
        ctx.error_at(child, "break", f'time: "{time}" is not a duration such as 500ms or 2s')
    strength = attrs.get("strength")
    allowed = ("none", "x-weak", "weak", "medium", "strong", "x-strong")
    if strength is not None and strength not in allowed:
        ctx.error_at(child, "break", f'strength: "{strength}" is not allowed; allowed: {", ".join(allowed)}')


def _plain(content) -> str:
    return "".join(c if isinstance(c, str) else _plain(c.children) for c in content)


def _speakable(content, pause) -> str:
    parts = []
    for item in content:
        if isinstance(item, str):
            parts.append(item)
        elif item.tag == "break":
            strength = item.attrs.get("strength")
            parts.append(" " if strength == "none" else f" {pause} ")
        elif item.tag == "sub":
            parts.append(item.attrs.get("alias", _plain(item.children)))
        elif item.tag == "say-as":
            parts.append(_say_as(item.attrs.get("interpret-as", ""), _speakable(item.children, pause)))
        elif item.tag in ("p", "s"):
            parts.append(" " + _speakable(item.children, pause) + " ")
        else:
            parts.append(_speakable(item.children, pause))
    return "".join(parts)


def _say_as(interpret_as: str, text: str) -> str:
    kind = interpret_as.strip().lower()
    if kind in ("characters", "spell-out", "digits", "telephone"):
        return " ".join(c for c in text if not c.isspace())
    return text
