"""<Redirect>: replace the document with the one the URL (the element's text) returns."""
from ..base import Attr
from ..flow import NextDocument
from .element import METHOD, VobizVerb


class Redirect(VobizVerb):
    name = "Redirect"
    TEXT = "url"
    ATTRIBUTES = (
        Attr("method", "method", METHOD, "POST"),
    )

    # -- execution ---------------------------------------------------------------------------
    def run(self, call) -> None:
        """Abandon the rest of the document and run the one at the URL (Event=Redirect)."""
        raise NextDocument(self.url, self.method, call.params(Event="Redirect"), "redirect")
