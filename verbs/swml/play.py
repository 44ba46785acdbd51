"""SWML play: http(s) files, say:<text>, silence:<seconds>, ring:[<seconds>:]<country> (url or urls)."""
import re
from dataclasses import dataclass

from ..base import Attr, AttrError, Custom, Float, Text, check_url
from ..errors import NotSupportedError
from .method import BOOL, HTTP_URL, SwmlMethod, json_type, swml_event


@dataclass(frozen=True)
class PlayItem:
    """One thing to play. kind: 'file' (url), 'say' (text), 'silence' (duration), 'ring' (duration, country)."""
    kind: str
    url: str | None = None
    text: str | None = None
    duration: float | None = None
    country: str | None = None


def play_item(raw) -> PlayItem:
    if not isinstance(raw, str):
        raise AttrError(f"must be a string, not {json_type(raw)}")
    text = raw.strip()
    low = text.lower()
    if low.startswith("say:"):
        spoken = text[4:].lstrip()
        if not spoken:
            raise AttrError('"say:" has no text')
        return PlayItem("say", text=spoken)
    if low.startswith("silence:"):
        m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*", text[8:])
        if not m:
            raise AttrError(f'"{text}": silence needs a duration in seconds, e.g. silence:2.5')
        return PlayItem("silence", duration=float(m.group(1)))
    if low.startswith("ring:"):
        m = re.fullmatch(r"\s*(?:(\d+(?:\.\d*)?)\s*:\s*)?([A-Za-z]{2})\s*", text[5:])
        if not m:
            raise AttrError(f'"{text}": ring needs a country code, e.g. ring:us or ring:20.0:us')
        return PlayItem("ring", duration=float(m.group(1)) if m.group(1) else None, country=m.group(2).lower())
    if low.startswith(("http://", "https://")):
        return PlayItem("file", url=check_url(text, ("http", "https")))
    raise AttrError(f'"{text[:60]}" is not playable; use an http(s) URL, say:<text>, silence:<seconds> '
                    "or ring:<country>")


def _url(raw, warnings):
    return play_item(raw)


def _urls(raw, warnings):
    if not isinstance(raw, list) or not raw:
        raise AttrError("must be a non-empty array of URLs")
    items = []
    for i, entry in enumerate(raw):
        try:
            items.append(play_item(entry))
        except AttrError as exc:
            raise AttrError(f"[{i}]: {exc}") from None
    return tuple(items)


class Play(SwmlMethod):
    name = "play"
    ATTRIBUTES = (
        Attr("url", "url", Custom(_url, "URL"), None),
        Attr("urls", "urls", Custom(_urls, "URLs"), None),
        Attr("auto_answer", "auto_answer", BOOL, True),
        Attr("volume", "volume", Float(-40, 40), 0.0),
        Attr("say_voice", "say_voice", Text(), "Polly.Salli"),
        Attr("say_language", "say_language", Text(), "en-US"),
        Attr("say_gender", "say_gender", Text(), "female"),
        Attr("status_url", "status_url", HTTP_URL, None),
    )

    @property
    def items(self) -> tuple:
        """What to play, in order (PlayItem objects)."""
        if self.url is not None:
            return (self.url,)
        return tuple(self.urls or ())

    def check(self):
        if self.ok("url", "urls") and (self.url is None) == (self.urls is None):
            return ["give exactly one of url or urls"]
        return []

    def summary(self) -> str:
        shown = []
        for item in self.items:
            shown.append(item.url if item.kind == "file" else
                         f"say:{item.text[:40]!r}" if item.kind == "say" else
                         f"silence:{item.duration}" if item.kind == "silence" else f"ring:{item.country}")
        return "play " + " ".join(shown)

    # -- execution ---------------------------------------------------------------------------
    def run(self, call) -> None:
        """Play the items in order: files (downloaded through the media cache; one that cannot be
        fetched is skipped and logged), say: (the same TTS as <Speak>), silence:<s>. ring: is not
        supported (it needs per-country cadences) and ends the call with a clear error."""
        for item in self.items:
            if item.kind == "ring":
                raise NotSupportedError(f"play ring:{item.country} is not supported by callfork yet; "
                                        "use a file URL, say: or silence:", self.line, self.column, "play")
        if self.auto_answer:
            call.ensure_answered()
        else:
            call.ensure_early_media()
        voice = call.tts_voice("MAN" if self.say_gender.lower() == "male" else self.say_voice, self.say_language)
        for item in self.items:
            if item.kind == "file":
                try:
                    path = call.services.media_file(item.url)
                except Exception as exc:  # MediaError or a failed download: skip, as <Play> does
                    call.error(f"play line {self.line}: {item.url} skipped: {exc}")
                    continue
                call.session.execute("playback", str(path))
            elif item.kind == "say":
                call.session.execute("speak", f"flite|{voice}|{item.text}")
            elif item.kind == "silence":
                ms = int(round(item.duration * 1000))
                if ms > 0:
                    call.session.execute("playback", f"silence_stream://{ms}")
            if call.interrupted.is_set():
                break
        if self.status_url:
            call.post(self.status_url, "POST", swml_event(call, "calling.call.play", {"state": "finished"}),
                      "calling.call.play", encoding="json")
