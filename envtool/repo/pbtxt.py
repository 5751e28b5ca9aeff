"""A span-preserving reader for protobuf text format (config.pbtxt).

protobuf's own printer drops comments and defaults, so it cannot rewrite a user's file. This module
tokenizes the text and records where every field and value starts and ends, so that edits can
replace exactly one span and leave every other byte alone. Validation stays with protobuf: after an
edit the result is re-parsed by text_format into ModelConfig.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from google.protobuf import text_encoding

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<comment>\#[^\n]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      | (?P<punct>[{}\[\]<>:,;])
      | (?P<word>[A-Za-z0-9_.+\-]+)
      | (?P<bad>.)""",
    re.VERBOSE,
)


class PbtxtError(ValueError):
    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


@dataclass
class Token:
    kind: str
    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass
class Value:
    start: int
    end: int
    fields: list[Field] | None = None  # set for a message value
    text: str = ""  # raw text of a scalar (adjacent strings included)
    open_end: int = 0  # just after '{' of a message
    close_start: int = 0  # at '}' of a message

    @property
    def is_message(self) -> bool:
        return self.fields is not None

    def get(self, name: str) -> list[Field]:
        return [f for f in self.fields or [] if f.name == name]

    def string(self) -> str | None:
        """The decoded value of a (possibly concatenated) string scalar."""
        parts = re.findall(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'""", self.text)
        if not parts:
            return None
        return "".join(text_encoding.CUnescape(p[1:-1]).decode("utf-8", "replace") for p in parts)


@dataclass
class Field:
    name: str
    start: int
    end: int
    values: list[Value] = field(default_factory=list)
    is_list: bool = False


def tokenize(text: str) -> list[Token]:
    out = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "bad"
        if kind == "bad":
            raise PbtxtError(f"unexpected character {m.group()!r}", m.start())
        if kind not in ("ws", "comment"):
            out.append(Token(kind, m.group(), m.start()))
    return out


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    def peek(self) -> Token | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, *texts: str) -> Token:
        tok = self.peek()
        if tok is None:
            raise PbtxtError(f"expected {' or '.join(texts)} before end of file", len(self.text))
        if texts and tok.text not in texts:
            raise PbtxtError(f"expected {' or '.join(texts)}, found {tok.text!r}", tok.start)
        self.i += 1
        return tok

    def message(self, closer: str | None) -> list[Field]:
        fields = []
        while (tok := self.peek()) is not None and tok.text != closer:
            fields.append(self.field())
            if (sep := self.peek()) is not None and sep.text in ",;":
                self.i += 1
        return fields

    def field(self) -> Field:
        name = self.take()
        if name.kind != "word":
            raise PbtxtError(f"expected a field name, found {name.text!r}", name.start)
        f = Field(name.text, name.start, name.end)
        colon = self.peek() is not None and self.peek().text == ":"
        if colon:
            self.i += 1
        nxt = self.peek()
        if nxt is not None and nxt.text == "[":
            self.i += 1
            f.is_list = True
            while (tok := self.peek()) is not None and tok.text != "]":
                f.values.append(self.value())
                if (sep := self.peek()) is not None and sep.text == ",":
                    self.i += 1
            f.end = self.take("]").end
        else:
            f.values.append(self.value())
            f.end = f.values[-1].end
        return f

    def value(self) -> Value:
        tok = self.take()
        if tok.text in "{<" and tok.kind == "punct":
            closer = "}" if tok.text == "{" else ">"
            fields = self.message(closer)
            close = self.take(closer)
            return Value(tok.start, close.end, fields=fields, open_end=tok.end,
                         close_start=close.start)
        if tok.kind not in ("word", "string"):
            raise PbtxtError(f"expected a value, found {tok.text!r}", tok.start)
        end = tok.end
        while tok.kind == "string" and (n := self.peek()) is not None and n.kind == "string":
            end = self.take().end  # "a" "b" concatenates
        return Value(tok.start, end, text=self.text[tok.start:end])


def parse(text: str) -> Value:
    """The whole file as one message Value spanning the text."""
    p = _Parser(text)
    fields = p.message(None)
    return Value(0, len(text), fields=fields, open_end=0, close_start=len(text))


def line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def indent_of(text: str, offset: int) -> str:
    """The leading whitespace of the line holding offset."""
    start = text.rfind("\n", 0, offset) + 1
    m = re.match(r"[ \t]*", text[start:])
    return m.group() if m else ""
