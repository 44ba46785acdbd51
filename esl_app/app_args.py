"""App args and FreeSWITCH's `${...}` expansion: `escape_app_arg`, for the places where the
channel's `app_disable_expand_variables` does not protect an app arg (the `set` app, which expands
its value itself; a session where that variable could not be set). Splitting text into API
arguments is another job: fsargs.quote_api_arg.
"""
import re


def escape_app_arg(text):
    """Make `text` survive FreeSWITCH's `${...}` expansion of an app arg unchanged.

    Not the API-argument quoting of `fsargs.quote_api_arg`: an app arg travels whole in the
    sendmsg body and is never split into arguments; what can change it is variable expansion.
    FreeSWITCH expands an app arg only when it contains `${` or escaped data (a backslash
    followed by one of `\\ n s t '`); during expansion `\\\\` -> `\\`, `\\$` -> `$`, `\\'` -> ``.
    So text that would not trigger expansion is returned as is, and otherwise every backslash and
    every `$` is escaped. Use it where `app_disable_expand_variables` does not apply (e.g. the
    `set` app, which expands its value itself, or strings built into originate/dialplan args).
    Not needed for CallSession.execute.
    """
    text = str(text)
    needs = '${' in text or re.search(r"\\[\\nst']", text) is not None
    if not needs:
        return text
    return text.replace('\\', '\\\\').replace('$', '\\$')
