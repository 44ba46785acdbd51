"""A document of sounds (a Vobiz `dialMusic`, `confirmSound` or `waitSound` URL: <Play> and <Wait>)
turned into one FreeSWITCH `file_string://` that FreeSWITCH plays by itself where no verb can run:
as the ringback of a <Dial>, to a callee before it is connected, to a conference member waiting.

<Play> URLs are downloaded through the media cache (`loop` repeats them; loop="0" counts as
`endless_loops` times, the file string has no "forever"); <Wait> becomes `silence_stream://<ms>`.
<Speak> cannot be played as a file there (FreeSWITCH's ringback and confirm prompts open files,
not TTS), and neither can other verbs: each is skipped with an error the user sees.
"""
from __future__ import annotations


def sound_file_string(call, url: str, params: dict, what: str, endless_loops: int = 20) -> str | None:
    """The file string of the document at `url` (fetched with POST and `params`), or None when it
    has nothing FreeSWITCH can play (the reasons are in the call's errors)."""
    from .document import parse_document
    try:
        result = call.services.fetch(url, "POST", params)
        document = parse_document(result.body, result.content_type)
    except Exception as exc:
        call.error(f"{what} {url}: {exc}")
        return None
    parts = []
    for item in document.verbs:
        if item.name == "Play":
            try:
                path = str(call.services.media_file(item.url))
            except Exception as exc:
                call.error(f"{what} <Play> {item.url} skipped: {exc}")
                continue
            parts += [path] * (item.loop or endless_loops)
        elif item.name == "Wait":
            parts.append(f"silence_stream://{int(item.length * 1000)}")
        else:
            call.error(f"{what}: <{item.name}> line {item.line} is skipped: only <Play> and <Wait> can be "
                       "played there (FreeSWITCH plays files, not TTS)")
    if not parts:
        return None
    return "file_string://" + "!".join(parts)
