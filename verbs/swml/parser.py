"""SWML (JSON or YAML) → sections of typed method objects, with every problem's section, index and line.

YAML is read with the safe loader (anchors/aliases refused: they allow "billion laughs" style blowups);
line numbers come from yaml.compose node marks, which also works for JSON text (JSON is YAML flow
syntax), so JSON documents get line numbers too when PyYAML can read them.
"""
from __future__ import annotations

import json

import yaml

from ..errors import ErrorDetail, NotSupportedError, SWMLError
from ..sniff import KIND_NAMES, read_text
from . import METHODS, UNSUPPORTED_METHODS
from .method import ParseOptions, UnsupportedMethod, json_type

MAX_ERRORS = 100
MAX_DEPTH = 64    # nesting of arrays/objects; PyYAML is quadratic (and libyaml crashes) on deep nesting
# libyaml when PyYAML has it (fast); safe either way since the depth is checked first
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_swml(body, allow_insecure_ws: bool = True) -> tuple[dict, list[str]]:
    """Parse a SWML document; return ({section: [methods]}, warnings) or raise SWMLError
    (NotSupportedError when every problem is something valid that callfork cannot run)."""
    text, kind = read_text(body, SWMLError, "SWML (JSON or YAML)")
    if kind in ("empty", "html", "xml"):
        raise SWMLError("the answer is empty; expected SWML" if kind == "empty"
                        else f"the answer is {KIND_NAMES[kind]}, not SWML (JSON or YAML)")
    data = _load(text, kind)
    if not isinstance(data, dict):
        what = "plain text" if isinstance(data, str) else json_type(data)
        raise SWMLError(f"the answer is {what}, not a SWML document (an object with sections.main)")
    return _Reader(text, ParseOptions(allow_insecure_ws=allow_insecure_ws)).read(data)


def _load(text: str, kind: str):
    _check_depth(text)
    try:
        if kind == "json":
            return json.loads(text, parse_constant=_refuse_constant)
        _refuse_aliases(text)
        return yaml.load(text, Loader=YAML_LOADER)
    except json.JSONDecodeError as exc:
        raise SWMLError(f"malformed JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise SWMLError(f"malformed YAML: {problem}", line, column) from None
    except RecursionError:
        raise SWMLError("the document is nested too deeply") from None
    except ValueError as exc:   # NaN/Infinity, integers beyond Python's digit limit
        raise SWMLError(f"malformed {'JSON' if kind == 'json' else 'YAML'}: {exc}") from None


def _check_depth(text: str) -> None:
    """Refuse documents nested deeper than MAX_DEPTH before any parser sees them. A linear scan:
    flow brackets outside quoted scalars and comments, and runs of block indicators ("- - - x")."""
    depth, line, quote, previous = 0, 1, None, "\n"
    i, n = 0, len(text)
    _check_block_run(text, 0, line)
    while i < n:
        c = text[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 1
            elif c == quote:
                if quote == "'" and i + 1 < n and text[i + 1] == "'":
                    i += 1
                else:
                    quote = None
            elif c == "\n":
                line += 1
        elif c in "\"'" and previous in " \t\n[{,:":
            quote = c
        elif c == "#" and previous in " \t\n":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise SWMLError(f"the document is nested too deeply (the limit is {MAX_DEPTH} levels)", line)
        elif c in "]}":
            depth = max(0, depth - 1)
        elif c == "\n":
            line += 1
            _check_block_run(text, i + 1, line)
        previous = c
        i += 1


def _check_block_run(text: str, start: int, line: int) -> None:
    """Refuse a line that opens more than MAX_DEPTH block collections at once ("- - - - x")."""
    run, j, n = 0, start, len(text)
    while j < n:
        while j < n and text[j] == " ":
            j += 1
        if j + 1 < n and text[j] in "-?" and text[j + 1] in " \t":
            run += 1
            j += 2
        else:
            break
    if run > MAX_DEPTH:
        raise SWMLError(f"the document is nested too deeply (the limit is {MAX_DEPTH} levels)", line)


def _refuse_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _refuse_aliases(text: str) -> None:
    for event in yaml.parse(text, Loader=YAML_LOADER):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            mark = event.start_mark
            raise SWMLError("YAML anchors and aliases are not allowed in SWML", mark.line + 1, mark.column + 1)


class _Reader:
    def __init__(self, text: str, options: ParseOptions):
        self.options = options
        self.errors: list[ErrorDetail] = []
        self.warnings: list[str] = []
        try:
            self.tree = yaml.compose(text, Loader=YAML_LOADER)
        except (yaml.YAMLError, RecursionError):
            self.tree = None

    def position(self, *path) -> tuple[int, int]:
        """(line, column) of the node at `path` (keys and indexes), or of its nearest ancestor."""
        node, best = self.tree, (0, 0)
        for step in path:
            if node is None:
                break
            found = None
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if getattr(key, "value", None) == step:
                        best = (key.start_mark.line + 1, key.start_mark.column + 1)
                        found = value
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
                found = node.value[step]
                best = (found.start_mark.line + 1, found.start_mark.column + 1)
            node = found
        return best

    def error(self, message, path, element=None, location=None, not_supported=False):
        line, column = self.position(*path)
        self.errors.append(ErrorDetail(message, line, column, element, location, not_supported))

    def read(self, data: dict):
        for key in data:
            if key not in ("version", "sections"):
                line, column = self.position(key)
                self.warnings.append(f"line {line}:{column}: unknown top-level key {key!r} is ignored")
        if "version" in data and str(data["version"]) != "1.0.0":
            self.error(f'version must be "1.0.0", not {json.dumps(data["version"])}', ("version",))
        sections_raw = data.get("sections")
        if not isinstance(sections_raw, dict):
            self.error("sections is missing" if sections_raw is None else
                       f"sections must be an object, not {json_type(sections_raw)}", ("sections",))
            self._raise()
        if "main" not in sections_raw:
            self.error("sections.main is missing (execution starts there)", ("sections",))
        sections = {}
        for name, steps in sections_raw.items():
            sections[str(name)] = self.read_section(str(name), steps)
        self._check_transfers(sections)
        self._raise()
        for name, verbs in sections.items():
            for verb in verbs:
                self.warnings.extend(f"line {verb.line}:{verb.column}: sections.{name}: {verb.name}: {w}"
                                     for w in verb.warnings)
        return sections, self.warnings

    def _check_transfers(self, sections):
        """A transfer to a section needs that section (found now, not when the call gets there)."""
        for name, verbs in sections.items():
            for index, verb in enumerate(verbs):
                if verb.name == "transfer" and getattr(verb, "dest", None) and not verb.is_url \
                        and verb.dest not in sections:
                    self.error(f"transfer: dest {verb.dest!r} is neither a section of this document "
                               f"({', '.join(sorted(sections))}) nor an http(s) URL",
                               ("sections", name, index), "transfer", f"sections.{name}[{index}]")

    def _raise(self):
        if not self.errors:
            return
        errors = self.errors[:MAX_ERRORS]
        cls = NotSupportedError if all(e.not_supported for e in errors) else SWMLError
        raise cls(errors=errors)

    def read_section(self, name: str, steps) -> list:
        path = ("sections", name)
        if not isinstance(steps, list):
            self.error(f"section {name} must be an array of methods, not {json_type(steps)}", path)
            return []
        verbs = []
        for index, step in enumerate(steps):
            verb = self.read_step(name, index, step)
            if verb is not None:
                verbs.append(verb)
        return verbs

    def read_step(self, section: str, index: int, step):
        path = ("sections", section, index)
        location = f"sections.{section}[{index}]"
        if isinstance(step, str):
            method, value = step, {}
        elif isinstance(step, dict) and len(step) == 1:
            method, value = next(iter(step.items()))
            method = str(method)
        else:
            keys = ", ".join(map(str, step)) if isinstance(step, dict) else json_type(step)
            self.error(f"a step must be an object with exactly one key (the method name); found {keys or 'no keys'}",
                       path, location=location)
            return None
        line, column = self.position(*path)
        if method in UNSUPPORTED_METHODS:
            return UnsupportedMethod.for_method(method, value, line, column, self.options)
        cls = METHODS.get(method)
        if cls is None:
            self.error(f"unknown SWML method {method}; supported: {', '.join(METHODS)}; "
                       f"parsed but not run yet: {', '.join(UNSUPPORTED_METHODS)}", path, method, location)
            return None
        result = cls.from_value(value, line, column, self.options)
        for message in result.errors:
            self.error(message, path, method, location)
        for message in result.unsupported:
            self.error(message, path, method, location, not_supported=True)
        return result.verb if not (result.errors or result.unsupported) else None
