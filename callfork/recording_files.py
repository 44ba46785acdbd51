"""Which file answers `GET /recordings/<name>`: a recording as it was written (`<id>.wav` or
`<id>.mp3`), the same with no extension (Twilio's RecordingUrl form), or the other format, which
Twilio apps ask for by appending `.mp3` or `.wav` to a RecordingUrl: converted once (soundfile, in
the hub's thread pool) and kept beside the original.
"""
from __future__ import annotations

import re
import uuid
from pathlib import Path

import gevent
from verbs.soundfile_threads import soundfile

FORMATS = {"wav": "audio/wav", "mp3": "audio/mpeg"}
_NAME = re.compile(r"(?P<id>[0-9a-f-]{36})(?:\.(?P<ext>wav|mp3))?")


class NoRecording(LookupError):
    """The name is not a recording's, or its file is gone."""


def recording_id(name: str) -> str:
    match = _NAME.fullmatch(name)
    if not match:
        raise NoRecording(name)
    return match["id"]


def recording_file(recordings_dir, name: str) -> tuple[Path, str]:
    """(path, media type) of the file that answers `name`; NoRecording when there is none."""
    match = _NAME.fullmatch(name)
    if not match:
        raise NoRecording(name)
    directory = Path(recordings_dir)
    written = [directory / f"{match['id']}.{ext}" for ext in FORMATS
               if (directory / f"{match['id']}.{ext}").exists()]
    if not written:
        raise NoRecording(name)
    wanted = match["ext"]
    if wanted is None:
        return written[0], FORMATS[written[0].suffix[1:]]
    target = directory / f"{match['id']}.{wanted}"
    source = next((path for path in written if path != target), None)
    # a conversion older than its source was made while the recorder still wrote it: made again
    if not target.exists() or (source is not None and target.stat().st_mtime_ns < source.stat().st_mtime_ns):
        try:
            gevent.get_hub().threadpool.apply(_convert, (source, target))
        except Exception as exc:   # a file the recorder had not finished, a full disk
            raise NoRecording(f"{name}: could not convert {source.name} ({exc})") from None
    return target, FORMATS[wanted]


def _convert(source: Path, target: Path) -> None:
    data, rate = soundfile.read(str(source), dtype="int16", always_2d=True)
    # a name of its own: two requests converting at once must not write (and move) one file
    partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.part")
    try:
        soundfile.write(str(partial), data, rate, format=target.suffix[1:].upper())
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
