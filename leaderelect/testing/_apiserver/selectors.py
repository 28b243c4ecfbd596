"""Field and label selectors for list and watch, with kube-apiserver's parse errors."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from .status import bad_request

__all__ = ["FieldSelector", "LabelSelector", "parse_field_selector", "parse_label_selector"]

_FIELD_LABELS = ("metadata.name", "metadata.namespace")


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSelector:
    """A conjunction of ``field=value`` / ``field!=value`` terms on name and namespace."""

    terms: tuple[tuple[str, bool, str], ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """True when the object satisfies every term."""
        meta = obj.get("metadata") or {}
        values = {
            "metadata.name": meta.get("name", ""),
            "metadata.namespace": meta.get("namespace", ""),
        }
        return all((values[field] == value) == equal for field, equal, value in self.terms)

    @property
    def name(self) -> str | None:
        """The name an ``metadata.name=X`` term pins (the request's name for authorization)."""
        for field, equal, value in self.terms:
            if field == "metadata.name" and equal:
                return value
        return None


_ESCAPED = re.compile(r"\\(.?)", re.DOTALL)


def _split_terms(text: str) -> list[str]:
    terms: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            current.append(ch)
            escaped = True
        elif ch == ",":
            terms.append("".join(current))
            current = []
        else:
            current.append(ch)
    terms.append("".join(current))
    return terms


def _unescape(value: str) -> str:
    """Drop each escaping backslash, keeping the character it escapes (a trailing one goes)."""
    return _ESCAPED.sub(r"\1", value)


def parse_field_selector(text: str) -> FieldSelector:
    """Parse ``fieldSelector``; only ``metadata.name`` and ``metadata.namespace`` are known.

    Raises:
        ApiError: 400 as the real server words it.
    """
    if not text.strip():
        return FieldSelector()
    terms = []
    for term in _split_terms(text):
        if not term:
            continue
        for op in ("!=", "==", "="):
            index = term.find(op)
            if index >= 0:
                field, value = term[:index], term[index + len(op) :]
                terms.append((field, op != "!=", _unescape(value)))
                break
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
    for field, _, _ in terms:
        if field not in _FIELD_LABELS:
            known = ", ".join(f'"{f}"' for f in _FIELD_LABELS)
            raise bad_request(f'"{field}" is not a known field selector: only {known}')
    return FieldSelector(tuple(terms))


@dataclasses.dataclass(frozen=True, slots=True)
class _Requirement:
    key: str
    operator: str
    values: tuple[str, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator in ("=", "==", "in"):
            return present and value in self.values
        if self.operator in ("!=", "notin"):
            return not present or value not in self.values
        if not present or value is None:
            return False
        try:
            number = int(value)
        except ValueError:
            return False
        bound = int(self.values[0])
        return number > bound if self.operator == "gt" else number < bound


@dataclasses.dataclass(frozen=True, slots=True)
class LabelSelector:
    """A conjunction of label requirements (``a=b``, ``a!=b``, ``a in (x,y)``, ``!a``...)."""

    requirements: tuple[_Requirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """True when the object's labels satisfy every requirement."""
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r.matches(labels) for r in self.requirements)


# The label selector grammar, lexer and parser as k8s.io/apimachinery/pkg/labels has them.

_SPECIAL = "=!(),><"
_SYMBOLS = {
    ")": ")",
    ",": ",",
    "!": "!",
    "==": "==",
    "=": "=",
    ">": "gt",
    "<": "lt",
    "!=": "!=",
    "(": "(",
}
_KEYWORDS = {"in": "in", "notin": "notin"}
_BINARY = ("in", "notin", "=", "==", "!=", "gt", "lt")
_IDENT = "ident"
_END = "end"
_ERROR = "error"


def _lex(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    i = 0
    while True:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        if i >= len(text):
            tokens.append((_END, ""))
            return tokens
        if text[i] in _SPECIAL:
            buffer = ""
            last: tuple[str, str] | None = None
            while i < len(text) and text[i] in _SPECIAL:
                buffer += text[i]
                if buffer in _SYMBOLS:
                    last = (_SYMBOLS[buffer], buffer)
                    i += 1
                elif last is not None:
                    break
                else:
                    i += 1
            if last is None:
                tokens.append((_ERROR, f"error expected: keyword found '{buffer}'"))
            else:
                tokens.append(last)
            continue
        start = i
        while i < len(text) and text[i] not in _SPECIAL and text[i] not in " \t\r\n":
            i += 1
        word = text[start:i]
        tokens.append((_KEYWORDS.get(word, _IDENT), word))


class _LabelParser:
    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.pos = 0

    def lookahead(self, values: bool) -> tuple[str, str]:
        token, literal = self.tokens[min(self.pos, len(self.tokens) - 1)]
        if values and token in ("in", "notin"):
            token = _IDENT
        return token, literal

    def consume(self, values: bool) -> tuple[str, str]:
        found = self.lookahead(values)
        self.pos += 1
        return found

    def key_and_operator(self) -> tuple[str, str]:
        token, literal = self.consume(True)
        operator = ""
        if token == "!":
            operator = "!"
            token, literal = self.consume(True)
        if token != _IDENT:
            raise ValueError(f"found '{literal}', expected: identifier")
        _check_key(literal)
        if self.lookahead(True)[0] in (_END, ",") and operator != "!":
            operator = "exists"
        return literal, operator

    def values(self) -> tuple[str, ...]:
        token, literal = self.consume(True)
        if token != "(":
            raise ValueError(f"found '{literal}' expected: '('")
        token, literal = self.lookahead(True)
        if token in (_IDENT, ","):
            found = self.identifiers()
            token, _ = self.consume(True)
            if token != ")":
                raise ValueError(f"found '{literal}', expected: ')'")
            return found
        if token == ")":
            self.consume(True)
            return ("",)
        raise ValueError(f"found '{literal}', expected: ',', ')' or identifier")

    def identifiers(self) -> tuple[str, ...]:
        found: list[str] = []
        while True:
            token, literal = self.consume(True)
            if token == _IDENT:
                found.append(literal)
                after, after_literal = self.lookahead(True)
                if after == ",":
                    continue
                if after == ")":
                    return tuple(dict.fromkeys(found))
                raise ValueError(f"found '{after_literal}', expected: ',' or ')'")
            if token == ",":
                if not found:
                    found.append("")
                after, _ = self.lookahead(True)
                if after == ")":
                    found.append("")
                    return tuple(dict.fromkeys(found))
                if after == ",":
                    self.consume(True)
                    found.append("")
                continue
            raise ValueError(f"found '{literal}', expected: ',', or identifier")

    def exact_value(self) -> tuple[str, ...]:
        token, _ = self.lookahead(True)
        if token in (_END, ","):
            return ("",)
        token, literal = self.consume(True)
        if token == _IDENT:
            return (literal,)
        raise ValueError(f"found '{literal}', expected: identifier")

    def requirement(self) -> _Requirement:
        key, operator = self.key_and_operator()
        if operator in ("exists", "!"):
            return _Requirement(key, operator, ())
        token, literal = self.consume(False)
        if token not in _BINARY:
            raise ValueError(f"found '{literal}', expected: {', '.join(_BINARY)}")
        values = self.values() if token in ("in", "notin") else self.exact_value()
        problems = []
        if token in ("gt", "lt"):
            problems += [
                f"values[{i}]: Invalid value: \"{v}\": for 'Gt', 'Lt' operators, the value must "
                "be an integer"
                for i, v in enumerate(values)
                if not _is_int(v)
            ]
        for i, value in enumerate(values):
            errors = _label_value_errors(value)
            if errors:
                problems.append(
                    f'values[{i}][{key}]: Invalid value: "{value}": {"; ".join(errors)}'
                )
        if problems:
            raise ValueError(problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]")
        return _Requirement(key, token, values)

    def parse(self) -> LabelSelector:
        requirements: list[_Requirement] = []
        while True:
            token, literal = self.lookahead(True)
            if token in (_IDENT, "!"):
                try:
                    requirements.append(self.requirement())
                except ValueError as exc:
                    raise bad_request(f"unable to parse requirement: {exc}") from None
                token, literal = self.consume(True)
                if token == _END:
                    return LabelSelector(tuple(requirements))
                if token == ",":
                    after, after_literal = self.lookahead(True)
                    if after not in (_IDENT, "!"):
                        raise bad_request(
                            f"found '{after_literal}', expected: identifier after ','"
                        )
                    continue
                raise bad_request(f"found '{literal}', expected: ',' or 'end of string'")
            if token == _END:
                return LabelSelector(tuple(requirements))
            raise bad_request(f"found '{literal}', expected: !, identifier, or 'end of string'")


def _is_int(text: str) -> bool:
    digits = text[1:] if text[:1] in "+-" else text
    return digits.isdigit() and digits.isascii()


def _check_key(key: str) -> None:
    from .validation import qualified_name_errors

    errors = qualified_name_errors(key)
    if errors:
        raise ValueError(f'<nil>: Invalid value: "{key}": {"; ".join(errors)}')


def _label_value_errors(value: str) -> list[str]:
    from .validation import label_value_errors

    return label_value_errors(value)


def parse_label_selector(text: str) -> LabelSelector:
    """Parse ``labelSelector``.

    Raises:
        ApiError: 400 ``unable to parse requirement: ...``.
    """
    if not text.strip():
        return LabelSelector()
    return _LabelParser(text).parse()
