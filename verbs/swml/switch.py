"""SWML switch (https://developer.signalwire.com/swml/methods/switch/): run the methods of the `case`
whose key equals a variable's value (or `default`), then go on with the next method.

`variable` names a method output in the vars scope, as `vars.connect_result` or `connect_result`;
other scopes (call., params., envs.) and expressions are refused as not supported. The methods of
the cases are parsed like a section's (errors keep the switch's position and say which case).
"""
from __future__ import annotations

import re

from ..base import Attr, AttrError, Custom, NotSupportedValue
from .method import SwmlMethod, call_vars, json_type, stringify

NAME = re.compile(r"(?:vars\.)?([A-Za-z_][A-Za-z0-9_]*)")


def _variable(raw, warnings):
    if not isinstance(raw, str) or not raw.strip():
        raise AttrError("must be a variable name such as vars.connect_result")
    text = raw.strip()
    match = NAME.fullmatch(text)
    if not match or text.split(".")[0] in ("call", "params", "envs"):
        raise NotSupportedValue(f'switch on "{text}" is not supported by callfork yet; only method outputs '
                                "(vars.NAME, e.g. vars.connect_result) can be switched on")
    return match.group(1)


def _steps(raw, where):
    if not isinstance(raw, list):
        raise AttrError(f"{where} must be an array of methods, not {json_type(raw)}")
    return raw


def _cases(raw, warnings):
    if not isinstance(raw, dict):
        raise AttrError(f"must be an object of value: [methods], not {json_type(raw)}")
    return {str(key): _steps(value, f"case {key!r}") for key, value in raw.items()}


class Switch(SwmlMethod):
    name = "switch"
    ATTRIBUTES = (
        Attr("variable", "variable", Custom(_variable, "vars.NAME"), None, required=True),
        Attr("case", "cases", Custom(_cases, "object"), {}),
        Attr("default", "default", Custom(lambda raw, w: _steps(raw, "default"), "array of methods"), []),
    )

    @classmethod
    def from_value(cls, value, line, column, options):
        result = super().from_value(value, line, column, options)
        verb = result.verb
        if verb is None or result.errors or result.unsupported:
            return result
        def parse(label, steps):
            verbs = []
            for index, step in enumerate(steps):
                nested = _nested(step, line, column, options)
                result.errors.extend(f"{label}[{index}]: {m}" for m in nested.errors)
                result.unsupported.extend(f"{label}[{index}]: {m}" for m in nested.unsupported)
                if nested.verb is not None:
                    verbs.append(nested.verb)
            return verbs
        verb.case_verbs = {key: parse(f"case {key!r}", steps) for key, steps in verb.cases.items()}
        verb.default_verbs = parse("default", verb.default)
        return result

    def summary(self) -> str:
        return f"switch vars.{self.variable} cases={','.join(self.cases)}"

    def run(self, call) -> None:
        value = stringify(call_vars(call).get(self.variable))
        chosen = self.case_verbs.get(value, self.default_verbs)
        call.timeline("switch", {"variable": self.variable, "value": value,
                                 "case": value if value in self.case_verbs else "default"})
        for verb in chosen:
            call.interpreter.run_verb(verb, nested=True)


def _nested(step, line, column, options):
    """One method inside a case, parsed as a section's step is."""
    from . import METHODS, UNSUPPORTED_METHODS
    from .method import StepResult, UnsupportedMethod
    if isinstance(step, str):
        method, value = step, {}
    elif isinstance(step, dict) and len(step) == 1:
        method, value = next(iter(step.items()))
        method = str(method)
    else:
        return StepResult(None, ["a step must be an object with exactly one key (the method name)"])
    if method in UNSUPPORTED_METHODS:
        return StepResult(UnsupportedMethod.for_method(method, value, line, column, options))
    cls = METHODS.get(method)
    if cls is None:
        return StepResult(None, [f"unknown SWML method {method}"])
    return cls.from_value(value, line, column, options)
