"""Hangup causes as FreeSWITCH names and numbers them (switch_types.h switch_call_cause_t,
switch_channel.c): the Q.850 table, the names `hangup`/`uuid_kill`/`originate` accept, and the
number `hangup_cause_q850` reports.

Approximated: the table covers the usual causes; others get 0 in hangup_cause_q850.
"""
from __future__ import annotations

Q850 = {
    'UNALLOCATED_NUMBER': 1, 'NO_ROUTE_TRANSIT_NET': 2, 'NO_ROUTE_DESTINATION': 3,
    'CHANNEL_UNACCEPTABLE': 6, 'NORMAL_CLEARING': 16, 'USER_BUSY': 17, 'NO_USER_RESPONSE': 18,
    'NO_ANSWER': 19, 'SUBSCRIBER_ABSENT': 20, 'CALL_REJECTED': 21, 'NUMBER_CHANGED': 22,
    'REDIRECTION_TO_NEW_DESTINATION': 23, 'DESTINATION_OUT_OF_ORDER': 27, 'INVALID_NUMBER_FORMAT': 28,
    'FACILITY_REJECTED': 29, 'NORMAL_UNSPECIFIED': 31, 'NORMAL_CIRCUIT_CONGESTION': 34,
    'NETWORK_OUT_OF_ORDER': 38, 'NORMAL_TEMPORARY_FAILURE': 41, 'SWITCH_CONGESTION': 42,
    'REQUESTED_CHAN_UNAVAIL': 44, 'SERVICE_UNAVAILABLE': 63, 'INCOMPATIBLE_DESTINATION': 88,
    'RECOVERY_ON_TIMER_EXPIRE': 102, 'INTERWORKING': 127,
    # FreeSWITCH's own causes (switch_types.h switch_call_cause_t): not Q.850; hangup_cause_q850
    # reports them as 16 (switch_channel_cause_q850: above INTERWORKING -> NORMAL_CLEARING)
    'ORIGINATOR_CANCEL': 487, 'SYSTEM_SHUTDOWN': 701, 'LOSE_RACE': 702, 'MANAGER_REQUEST': 703,
    'ALLOTTED_TIMEOUT': 802,
}
HANGUP_CAUSES = set(Q850) | {
    'NONE', 'CALL_AWARDED_DELIVERED', 'EXCHANGE_ROUTING_ERROR', 'RESPONSE_TO_STATUS_ENQUIRY',
    'ACCESS_INFO_DISCARDED', 'PRE_EMPTED', 'FACILITY_NOT_SUBSCRIBED', 'OUTGOING_CALL_BARRED',
    'INCOMING_CALL_BARRED', 'BEARERCAPABILITY_NOTAUTH', 'BEARERCAPABILITY_NOTAVAIL',
    'BEARERCAPABILITY_NOTIMPL', 'CHAN_NOT_IMPLEMENTED', 'FACILITY_NOT_IMPLEMENTED',
    'SERVICE_NOT_IMPLEMENTED', 'INVALID_CALL_REFERENCE', 'INVALID_MSG_UNSPECIFIED',
    'MANDATORY_IE_MISSING', 'MESSAGE_TYPE_NONEXIST', 'WRONG_MESSAGE', 'IE_NONEXIST',
    'INVALID_IE_CONTENTS', 'WRONG_CALL_STATE', 'MANDATORY_IE_LENGTH_ERROR', 'PROTOCOL_ERROR',
    'SUCCESS', 'CRASH', 'BLIND_TRANSFER', 'ATTENDED_TRANSFER', 'USER_CHALLENGE', 'MEDIA_TIMEOUT',
    'PICKED_OFF', 'USER_NOT_REGISTERED', 'PROGRESS_TIMEOUT', 'INVALID_GATEWAY', 'GATEWAY_DOWN',
    'INVALID_URL', 'INVALID_PROFILE', 'NO_PICKUP', 'SRTP_READ_ERROR', 'BOWOUT', 'BUSY_EVERYWHERE',
    'DECLINE', 'DOES_NOT_EXIST_ANYWHERE', 'NOT_ACCEPTABLE', 'UNWANTED', 'NO_IDENTITY',
    'BAD_IDENTITY_INFO', 'UNSUPPORTED_CERTIFICATE', 'INVALID_IDENTITY'}


def normalize_cause(cause: str | None) -> str:
    """Map a cause name (or Q.850 number) to a FreeSWITCH cause name; unknown -> NORMAL_CLEARING."""
    if not cause:
        return 'NORMAL_CLEARING'
    cause = cause.strip().upper()
    if cause.isdigit():
        for name, code in Q850.items():
            if code == int(cause):
                return name
        return 'NORMAL_CLEARING'
    return cause if cause in HANGUP_CAUSES else 'NORMAL_CLEARING'


def q850_code(cause: str) -> int:
    """hangup_cause_q850: the Q.850 number (0 when unknown); FreeSWITCH's own causes above
    INTERWORKING report 16 (switch_channel_cause_q850)."""
    code = Q850.get(cause, 0)
    return code if code <= 127 else 16
