"""<Say>: text-to-speech, run as Vobiz <Speak> runs it (mod_flite, SSML children reduced to text).

Twilio's voices (man, woman, alice, Polly.*, Google.*) are mapped onto the configured flite voices by
`call.tts_voice` ([tts] voices): man → MAN's voice, every other one → WOMAN's. `language` is kept
(flite speaks English whatever it says; a language other than English is a warning); loop="0" repeats until the call ends, as Twilio's loop="0"
does (https://www.twilio.com/docs/voice/twiml/say).
"""
from __future__ import annotations

import re

from ..base import Attr, AttrError, Custom, Int, Text
from ..vobiz.speak import Speak


def _voice(raw, warnings):
    value = raw.strip() if isinstance(raw, str) else ""
    if value.lower() in ("man", "woman", "alice"):
        return value.lower()
    if re.fullmatch(r"(Polly|Google)\.[A-Za-z0-9_\-]+", value):
        return value
    raise AttrError(f'"{value}" is not a voice; allowed: man, woman, alice, Polly.<name>, Google.<name>')


class Say(Speak):
    name = "Say"
    ATTRIBUTES = (
        Attr("voice", "voice", Custom(_voice, "man|woman|alice|Polly.*|Google.*"), "man"),
        Attr("language", "language", Text(pattern=r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*",
                                          pattern_desc="a language tag such as en-US"), "en-US"),
        Attr("loop", "loop", Int(minimum=0), 1),   # 0 = until the call ends
    )

    def check(self):
        # Twilio's voices each have their languages; flite speaks English for all: a document that asks
        # for another language is run, with a warning (validate shows it, the call logs it)
        if self.ok("language") and not self.language.lower().startswith("en"):
            self.warnings.append(f'language "{self.language}" is spoken in English: callfork\'s text-to-speech '
                                 "(mod_flite) has English voices only")
        return []
