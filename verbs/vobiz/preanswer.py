"""<PreAnswer>: play its Speak/Play/Wait children as early media before the call is answered."""
from .element import VobizVerb


class PreAnswer(VobizVerb):
    name = "PreAnswer"
    CHILDREN = ("Speak", "Play", "Wait")

    # -- execution ---------------------------------------------------------------------------
    def run(self, call) -> None:
        """Early media: pre-answer, play the children without answering, then go on."""
        if call.answered:
            for child in self.children:
                call.run_nested(child)
            return
        call.ensure_early_media()
        call.early_media_only = True
        try:
            for child in self.children:
                call.run_nested(child)
        finally:
            call.early_media_only = False
