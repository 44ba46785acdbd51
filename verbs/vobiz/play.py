"""<Play>: play an audio file given by an http(s) URL (the element's text)."""
from ..base import Attr, Int
from .element import VobizVerb


class Play(VobizVerb):
    name = "Play"
    TEXT = "url"
    ATTRIBUTES = (
        Attr("loop", "loop", Int(minimum=0), 1),   # 0 = forever
    )

    # -- execution ---------------------------------------------------------------------------
    def run(self, call) -> None:
        """Download (cached) and play the file `loop` times (0 = until hangup). A URL that cannot
        be fetched or is not audio skips the element, as Vobiz does, with an error in the log."""
        try:
            path = call.services.media_file(self.url)
        except Exception as exc:  # esl_app.MediaError, or anything the download raised
            call.error(f"<Play> line {self.line} skipped: {exc}")
            return
        call.ensure_answered()
        count = 0
        while self.loop == 0 or count < self.loop:
            if call.interrupted.is_set() or call.barged_in():   # before each playback too (see Speak)
                return
            done = call.session.execute("playback", str(path))
            if done.get("Application-Response") == "FILE NOT FOUND":
                call.error(f"<Play> line {self.line}: FreeSWITCH could not open {path}")
                return
            count += 1
            if call.interrupted.is_set() or call.barged_in():
                return
