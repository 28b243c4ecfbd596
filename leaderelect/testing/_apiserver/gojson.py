"""JSON as Go's ``encoding/json`` reads and writes it, with Go's error messages.

kube-apiserver decodes request bodies with a fork of ``encoding/json``; its syntax errors
("invalid character '}' looking for beginning of object key string", "unexpected end of JSON
input") reach clients verbatim. This module parses bytes the way Go's scanner does, keeps number
literals as written (Go reports ``number 1.5`` for a bad int32), remembers duplicate keys (strict
decoding reports them), and encodes the way Go's encoder does (``<``, ``>``, ``&`` escaped, keys
in the order given, ``\\n`` after compact output, two-space indentation without a newline).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TypeAlias

__all__ = [
    "GoNumber",
    "JsonObject",
    "JsonSyntaxError",
    "JsonValue",
    "dumps",
    "go_quote",
    "parse",
    "quote_char",
]


@dataclasses.dataclass(frozen=True, slots=True)
class GoNumber:
    """A JSON number kept as its literal text, as Go's decoder sees it."""

    literal: str

    def as_int(self) -> int | None:
        """The value if the literal is an integer Go's ``strconv.ParseInt`` accepts, else None."""
        text = self.literal
        digits = text[1:] if text.startswith("-") else text
        if not digits.isdigit():
            return None
        return int(text)

    def as_float(self) -> float:
        """The value as a float (what Go's ``interface{}`` decoding produces)."""
        return float(self.literal)


class JsonObject(dict[str, "JsonValue"]):
    """A decoded JSON object: keys in first-seen order, later duplicates overwrite earlier ones.

    ``duplicates`` lists the keys that appeared more than once, in the order the repeats were
    seen (strict decoding reports them as ``duplicate field``).
    """

    __slots__ = ("duplicates",)

    def __init__(self) -> None:
        super().__init__()
        self.duplicates: list[str] = []


JsonValue: TypeAlias = (
    "bool | str | int | float | GoNumber | list[JsonValue] | dict[str, JsonValue] | None"
)


class JsonSyntaxError(ValueError):
    """Raised when bytes are not JSON; the message is Go's ``encoding/json`` message."""


_WHITESPACE = b" \t\r\n"
_HEX = b"0123456789abcdefABCDEF"
_ESCAPES = {
    ord('"'): '"',
    ord("\\"): "\\",
    ord("/"): "/",
    ord("b"): "\b",
    ord("f"): "\f",
    ord("n"): "\n",
    ord("r"): "\r",
    ord("t"): "\t",
}


def quote_char(c: int) -> str:
    """Go's ``quoteChar``: how the scanner names an unexpected byte in its messages."""
    if c == ord("'"):
        return "'\\''"
    if c == ord('"'):
        return "'\"'"
    return "'" + go_quote(chr(c))[1:-1] + "'"


_GO_QUOTE_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    '"': '\\"',
    "\\": "\\\\",
}


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote`` (and ``%q``): a double-quoted string with Go escapes."""
    out = ['"']
    for ch in text:
        escaped = _GO_QUOTE_ESCAPES.get(ch)
        if escaped is not None:
            out.append(escaped)
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


class _Parser:
    """A recursive-descent parser whose errors match Go's state-machine scanner."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def fail(self, context: str) -> JsonSyntaxError:
        if self.pos >= len(self.data):
            return JsonSyntaxError("unexpected end of JSON input")
        return JsonSyntaxError(f"invalid character {quote_char(self.data[self.pos])} {context}")

    def skip_ws(self) -> None:
        data, pos = self.data, self.pos
        while pos < len(data) and data[pos] in _WHITESPACE:
            pos += 1
        self.pos = pos

    def peek(self) -> int:
        return self.data[self.pos] if self.pos < len(self.data) else -1

    def parse_document(self) -> JsonValue:
        value = self.value()
        self.skip_ws()
        if self.pos < len(self.data):
            raise self.fail("after top-level value")
        return value

    def value(self) -> JsonValue:
        self.skip_ws()
        c = self.peek()
        if c == ord("{"):
            return self.obj()
        if c == ord("["):
            return self.array()
        if c == ord('"'):
            return self.string()
        if c == ord("-") or ord("0") <= c <= ord("9"):
            return self.number()
        if c == ord("t"):
            self.literal(b"true")
            return True
        if c == ord("f"):
            self.literal(b"false")
            return False
        if c == ord("n"):
            self.literal(b"null")
            return None
        raise self.fail("looking for beginning of value")

    def literal(self, word: bytes) -> None:
        self.pos += 1
        for expected in word[1:]:
            if self.peek() != expected:
                raise self.fail(f"in literal {word.decode()} (expecting {quote_char(expected)})")
            self.pos += 1

    def obj(self) -> JsonObject:
        self.pos += 1
        result = JsonObject()
        self.skip_ws()
        if self.peek() == ord("}"):
            self.pos += 1
            return result
        while True:
            self.skip_ws()
            if self.peek() != ord('"'):
                raise self.fail("looking for beginning of object key string")
            key = self.string()
            self.skip_ws()
            if self.peek() != ord(":"):
                raise self.fail("after object key")
            self.pos += 1
            item = self.value()
            if key in result:
                result.duplicates.append(key)
            result[key] = item
            self.skip_ws()
            c = self.peek()
            if c == ord(","):
                self.pos += 1
                continue
            if c == ord("}"):
                self.pos += 1
                return result
            raise self.fail("after object key:value pair")

    def array(self) -> list[JsonValue]:
        self.pos += 1
        result: list[JsonValue] = []
        self.skip_ws()
        if self.peek() == ord("]"):
            self.pos += 1
            return result
        while True:
            result.append(self.value())
            self.skip_ws()
            c = self.peek()
            if c == ord(","):
                self.pos += 1
                continue
            if c == ord("]"):
                self.pos += 1
                return result
            raise self.fail("after array element")

    def string(self) -> str:
        data = self.data
        self.pos += 1
        chunks: list[bytes] = []
        start = self.pos
        while True:
            if self.pos >= len(data):
                raise self.fail("in string literal")
            c = data[self.pos]
            if c == ord('"'):
                chunks.append(data[start : self.pos])
                self.pos += 1
                return self.decode_chunks(chunks)
            if c < 0x20:
                raise self.fail("in string literal")
            if c != ord("\\"):
                self.pos += 1
                continue
            chunks.append(data[start : self.pos])
            self.pos += 1
            esc = self.peek()
            if esc in _ESCAPES:
                chunks.append(_ESCAPES[esc].encode())
                self.pos += 1
            elif esc == ord("u"):
                self.pos += 1
                chunks.append(self.unicode_escape())
            else:
                raise self.fail("in string escape code")
            start = self.pos

    def hex4(self) -> int:
        for _ in range(4):
            if self.peek() not in _HEX:
                raise self.fail("in \\u hexadecimal character escape")
            self.pos += 1
        return int(self.data[self.pos - 4 : self.pos], 16)

    def unicode_escape(self) -> bytes:
        code = self.hex4()
        if 0xD800 <= code < 0xDC00 and self.data[self.pos : self.pos + 2] == b"\\u":
            save = self.pos
            self.pos += 2
            low = self.hex4()
            if 0xDC00 <= low < 0xE000:
                return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)).encode()
            self.pos = save
        if 0xD800 <= code < 0xE000:
            return "\ufffd".encode()
        return chr(code).encode()

    @staticmethod
    def decode_chunks(chunks: list[bytes]) -> str:
        return b"".join(chunks).decode("utf-8", errors="replace")

    def digits(self) -> None:
        while ord("0") <= self.peek() <= ord("9"):
            self.pos += 1

    def number(self) -> GoNumber:
        start = self.pos
        if self.peek() == ord("-"):
            self.pos += 1
            if not ord("0") <= self.peek() <= ord("9"):
                raise self.fail("in numeric literal")
        if self.peek() == ord("0"):
            self.pos += 1
        else:
            self.digits()
        if self.peek() == ord("."):
            self.pos += 1
            if not ord("0") <= self.peek() <= ord("9"):
                raise self.fail("after decimal point in numeric literal")
            self.digits()
        if self.peek() in (ord("e"), ord("E")):
            self.pos += 1
            if self.peek() in (ord("+"), ord("-")):
                self.pos += 1
            if not ord("0") <= self.peek() <= ord("9"):
                raise self.fail("in exponent of numeric literal")
            self.digits()
        return GoNumber(self.data[start : self.pos].decode("ascii"))


def parse(data: bytes) -> JsonValue:
    """Parse ``data`` as Go's ``json.Unmarshal`` would scan it.

    Objects become :class:`JsonObject`, numbers :class:`GoNumber`.

    Raises:
        JsonSyntaxError: with Go's message, e.g. ``unexpected end of JSON input``.
    """
    return _Parser(data).parse_document()


# ---------------------------------------------------------------------------------------------
# Encoding


_ENCODE_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _encode_string(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif code < 0x20:
            out.append(_ENCODE_ESCAPES.get(ch) or f"\\u{code:04x}")
        elif ch in "<>&\u2028\u2029":
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _encode(value: object, indent: str | None, depth: int, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_string(value))
    elif isinstance(value, GoNumber):
        out.append(value.literal)
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_format_float(value))
    elif isinstance(value, Mapping):
        if not value:
            out.append("{}")
            return
        out.append("{")
        first = True
        for key, item in value.items():
            if not first:
                out.append(",")
            first = False
            if indent is not None:
                out.append("\n" + indent * (depth + 1))
            out.append(_encode_string(str(key)))
            out.append(": " if indent is not None else ":")
            _encode(item, indent, depth + 1, out)
        if indent is not None:
            out.append("\n" + indent * depth)
        out.append("}")
    elif isinstance(value, Sequence):
        if not value:
            out.append("[]")
            return
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            if indent is not None:
                out.append("\n" + indent * (depth + 1))
            _encode(item, indent, depth + 1, out)
        if indent is not None:
            out.append("\n" + indent * depth)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _format_float(value: float) -> str:
    """Go's float64 formatting in encoding/json ('f' for moderate exponents, else 'e')."""
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exp = text.split("e")
        sign = exp[0] if exp[0] in "+-" else "+"
        digits = exp.lstrip("+-").lstrip("0") or "0"
        text = f"{mantissa}e{sign}{digits.zfill(2)}"
    return text


def dumps(value: object, *, pretty: bool = False) -> str:
    """Encode ``value`` as kube-apiserver writes it.

    Compact output ends with a newline (Go's ``json.Encoder``); pretty output is indented with two
    spaces and has no trailing newline (``json.MarshalIndent``).
    """
    out: list[str] = []
    _encode(value, "  " if pretty else None, 0, out)
    if not pretty:
        out.append("\n")
    return "".join(out)
