"""The CDR variables FreeSWITCH sets on a channel when it reaches CS_REPORTING
(switch_channel_set_timestamps / switch_core_session_hangup_state): the hangup cause, the
`*_stamp`, `*_epoch` and `*_uepoch` times, the durations in s/ms/us, last_app and caller_id, in the
order FreeSWITCH sets them (setting a variable moves it to the end of the list events carry).
"""
from __future__ import annotations

import time

from .causes import q850_code


def cdr_variables(ch) -> list[tuple[str, str | None]]:
    """The (name, value) pairs to set, in order, on `ch` as it hangs up; an empty value unsets."""
    end_us = int(time.time() * 1_000_000)
    start_us = ch.created_us
    answer_us = ch.answered_us
    pm_us = ch.progress_media_us
    pr_us = ch.progress_us

    def stamp(us):
        return time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(us / 1e6))

    out = [('hangup_cause', ch.hangup_cause), ('hangup_cause_q850', str(q850_code(ch.hangup_cause))),
           ('digits_dialed', ch.digits_dialed or 'none'), ('start_stamp', stamp(start_us)),
           ('profile_start_stamp', stamp(start_us))]
    if answer_us:
        out.append(('answer_stamp', stamp(answer_us)))
    if pm_us:
        out.append(('progress_media_stamp', stamp(pm_us)))
    out.append(('end_stamp', stamp(end_us)))
    for key, us in (('start', start_us), ('profile_start', start_us), ('answer', answer_us),
                    ('bridge', 0), ('last_hold', 0)):
        out += [(key + '_epoch', str(us // 1_000_000)), (key + '_uepoch', str(us))]
    out += [('hold_accum_seconds', '0'), ('hold_accum_usec', '0'), ('hold_accum_ms', '0')]
    for key, us in (('resurrect', 0), ('progress', pr_us), ('progress_media', pm_us), ('end', end_us)):
        out += [(key + '_epoch', str(us // 1_000_000)), (key + '_uepoch', str(us))]
    if ch.last_app:
        out += [('last_app', ch.last_app), ('last_arg', ch.last_arg)]
    out.append(('caller_id', '"%s" <%s>' % (ch.caller_name, ch.caller_number)))
    billusec = end_us - answer_us if answer_us else 0
    uduration = end_us - start_us
    progressusec = pr_us - start_us if pr_us else 0
    answerusec = answer_us - start_us if answer_us else 0
    pmusec = pm_us - start_us if pm_us else 0
    waitusec = answerusec
    spans = (uduration, billusec, progressusec, answerusec, waitusec, pmusec, uduration)
    for names, divisor in (
            (('duration', 'billsec', 'progresssec', 'answersec', 'waitsec', 'progress_mediasec',
              'flow_billsec'), 1_000_000),
            (('mduration', 'billmsec', 'progressmsec', 'answermsec', 'waitmsec', 'progress_mediamsec',
              'flow_billmsec'), 1000),
            (('uduration', 'billusec', 'progressusec', 'answerusec', 'waitusec', 'progress_mediausec',
              'flow_billusec'), 1)):
        out += [(name, str(us // divisor)) for name, us in zip(names, spans)]
    return out
