"""SWML transfer: go on with another section of the document, or with the document an http(s) URL
returns (POST, with `params` added to the call's parameters); what follows the transfer in the
current section never runs. `dest` naming neither a section nor a URL is an error at parse time
(swml/parser.py checks the sections); an inline SWML document (a JSON string) and `relay:` are not
supported. https://developer.signalwire.com/swml/methods/transfer/
"""
from ..base import Attr, AttrError, Custom, NotSupportedValue, check_url
from ..flow import NextDocument, NextSection
from .method import SwmlMethod, json_type


def _dest(raw, warnings):
    if not isinstance(raw, str) or not raw.strip():
        raise AttrError(f"must be a section name or an http(s) URL, not {json_type(raw)}")
    text = raw.strip()
    if text.startswith(("{", "[")):
        raise NotSupportedValue("an inline SWML document is not supported by callfork; give a section or a URL")
    if text.lower().startswith("relay:"):
        raise NotSupportedValue("relay: destinations are not supported (SignalWire does not run them either)")
    if text.lower().startswith(("http://", "https://")):
        return check_url(text, ("http", "https"))
    if "://" in text or "@" in text:
        raise AttrError(f'"{text}" is neither a section name nor an http(s) URL')
    return text


def _params(raw, warnings):
    if not isinstance(raw, dict):
        raise AttrError(f"must be an object, not {json_type(raw)}")
    return {str(k): v for k, v in raw.items()}


class Transfer(SwmlMethod):
    name = "transfer"
    SCALAR = "dest"
    ATTRIBUTES = (
        Attr("dest", "dest", Custom(_dest, "a section name or an http(s) URL"), None, required=True),
        Attr("params", "params_given", Custom(_params, "an object"), {}),
        Attr("meta", "meta", Custom(lambda raw, w: raw, "anything"), None, ignored="user data, ignored"),
    )

    @property
    def is_url(self) -> bool:
        return self.dest.lower().startswith(("http://", "https://"))

    def summary(self) -> str:
        return f"transfer {self.dest}"

    def run(self, call) -> None:
        if self.is_url:
            params = call.params(**{k: v if isinstance(v, str) else str(v) for k, v in self.params_given.items()})
            raise NextDocument(self.dest, "POST", params, "transfer")
        raise NextSection(self.dest)
