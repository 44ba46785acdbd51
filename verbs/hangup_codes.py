"""Vobiz hangup codes: why a call ended, as the hangup webhook reports it.

Owns the table of HangupCauseCode / HangupCauseName / HangupSource values (https://docs.vobiz.ai/concepts/hangup-causes)
and the mapping from FreeSWITCH hangup causes to them. `CallEnd` is the value the interpreter
carries from the moment it decides to end a call to the hangup webhook.
"""
from __future__ import annotations

from dataclasses import dataclass

# code -> name, as documented (https://docs.vobiz.ai/concepts/hangup-causes)
CODE_NAMES = {
    1000: "Canceled",
    3000: "No Answer",
    3010: "Busy Line",
    3020: "Rejected",
    4000: "Normal Hangup",
    4010: "End Of XML Instructions",
    5000: "Internal Error",
    6000: "Scheduled Hangup",
    6010: "Ring Timeout Reached",
    6020: "Media Timeout",
    7011: "Error Reaching Answer URL",
    7012: "Error Reaching Action URL",
    7013: "Error Reaching Transfer URL",
    7014: "Error Reaching Redirect URL",
    8011: "Invalid Answer XML",
    8012: "Invalid Action XML",
    8013: "Invalid Transfer XML",
    8014: "Invalid Redirect XML",
    9000: "Lost Race",
}

# HangupSource values Vobiz uses
SOURCE_CALLER = "Caller"
SOURCE_CALLEE = "Callee"
SOURCE_VOBIZ = "Vobiz"
SOURCE_API = "API Request"
SOURCE_XML = "Answer XML"
SOURCE_ERROR = "Error"

# which document a fetch was for: decides 7011/7012/7013/7014 and 8011/8012/8013/8014
UNREACHABLE = {"answer": 7011, "action": 7012, "transfer": 7013, "redirect": 7014}
INVALID = {"answer": 8011, "action": 8012, "transfer": 8013, "redirect": 8014}


@dataclass
class CallEnd:
    """Why the call ended: what the hangup webhook says, and the FreeSWITCH cause to hang up with."""

    code: int
    source: str
    fs_cause: str = "NORMAL_CLEARING"
    error: str = ""

    @property
    def name(self) -> str:
        return CODE_NAMES.get(self.code, "Unknown")


def end_of_document() -> CallEnd:
    return CallEnd(4010, SOURCE_VOBIZ)


def fetch_failed(kind: str, error: str) -> CallEnd:
    return CallEnd(UNREACHABLE[kind], SOURCE_ERROR, "NORMAL_CLEARING", error)


def document_invalid(kind: str, error: str) -> CallEnd:
    return CallEnd(INVALID[kind], SOURCE_ERROR, "NORMAL_CLEARING", error)


def from_fs_cause(cause: str | None, answered: bool, direction: str = "inbound") -> CallEnd:
    """The end of a call that callfork did not decide: the far end, the network or FreeSWITCH.
    The far end is the caller on an inbound call and the callee on an outbound (REST) one."""
    cause = cause or "NORMAL_CLEARING"
    if direction == "outbound" and cause in ("NORMAL_CLEARING", "NORMAL_UNSPECIFIED"):
        return CallEnd(4000, SOURCE_CALLEE, cause)
    if cause == "ORIGINATOR_CANCEL" or (not answered and cause == "NORMAL_CLEARING"):
        return CallEnd(1000, SOURCE_CALLER, cause)
    if cause == "USER_BUSY":
        return CallEnd(3010, SOURCE_CALLEE, cause)
    if cause in ("NO_ANSWER", "NO_USER_RESPONSE"):
        return CallEnd(3000, SOURCE_CALLEE, cause)
    if cause == "CALL_REJECTED":
        return CallEnd(3020, SOURCE_CALLEE, cause)
    if cause == "ALLOTTED_TIMEOUT":
        return CallEnd(6000, SOURCE_VOBIZ, cause)
    if cause == "MEDIA_TIMEOUT":
        return CallEnd(6020, SOURCE_VOBIZ, cause)
    if cause == "LOSE_RACE":
        return CallEnd(9000, SOURCE_VOBIZ, cause)
    if cause in ("NORMAL_CLEARING", "NORMAL_UNSPECIFIED"):
        return CallEnd(4000, SOURCE_CALLER, cause)
    return CallEnd(5000, SOURCE_ERROR, cause, f"FreeSWITCH ended the call with {cause}")
