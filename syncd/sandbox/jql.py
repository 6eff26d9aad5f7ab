"""The subset of JQL the Jira emulator understands, parsed into a filter and an order.

Enough for what clients send in practice and for the pitfalls worth reproducing::

    project = OPS AND updated >= 1714564800000 ORDER BY updated ASC, key ASC
    (project in (OPS, WEB) OR assignee IS EMPTY) AND NOT status = Done
    updated > "2024/05/01 12:00"          # minute precision, in the user's time zone

Clauses: project, key/issuekey, assignee, reporter, status, statusCategory (=, !=, IN, NOT IN,
IS [NOT] EMPTY) and created/updated (=, !=, <, <=, >, >=). A date is epoch milliseconds or
"yyyy/MM/dd[ HH:mm]" / "yyyy-MM-dd[ HH:mm]" read in the searching user's time zone, which
is exactly the precision trap the real one sets. Anything else is a JqlError, which the
emulator answers with Jira's 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

Record = Mapping[str, Any]  # field name -> value; dates are aware datetimes
Predicate = Callable[[Record], bool]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>!=|>=|<=|=|>|<|\(|\)|,)
      | (?P<word>[A-Za-z0-9_.:@+/-]+(?:\(\))?)
    )""",
    re.VERBOSE,
)
_TEXT_FIELDS = {
    "project": "project",
    "key": "key",
    "issuekey": "key",
    "assignee": "assignee",
    "reporter": "reporter",
    "status": "status",
    "statuscategory": "statusCategory",
}
_DATE_FIELDS = {"updated": "updated", "created": "created"}
_DATE_FORMATS = ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y-%m-%d")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class JqlError(ValueError):
    """A query outside the subset, worded the way Jira words it."""


@dataclass(frozen=True)
class Query:
    where: Predicate | None  # None: no restriction at all (an unbounded query)
    order: tuple[tuple[str, bool], ...]  # (field, descending)


@dataclass(frozen=True)
class _Token:
    kind: str  # string | op | word
    text: str

    def keyword(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words


def _tokens(text: str) -> list[_Token]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise JqlError(f"Error in the JQL Query: the character {text[pos]!r} is not valid.")
        kind = m.lastgroup or "word"
        value = m.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out.append(_Token(kind, value))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str, zone: tzinfo, current_user: str | None) -> None:
        self.tokens = _tokens(text)
        self.pos = 0
        self.zone = zone
        self.current_user = current_user

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise JqlError("Error in the JQL Query: Expecting more input at the end of the query.")
        self.pos += 1
        return token

    def query(self) -> Query:
        where = None
        token = self.peek()
        if token is not None and not token.keyword("ORDER"):
            where = self.disjunction()
        order: list[tuple[str, bool]] = []
        token = self.peek()
        if token is not None and token.keyword("ORDER"):
            self.take()
            if not self.take().keyword("BY"):
                raise JqlError("Error in the JQL Query: Expecting 'BY' after 'ORDER'.")
            while True:
                name = self.take().text.lower()
                if name not in ("updated", "created", "key", "issuekey"):
                    raise JqlError(f"Not able to sort using field '{name}'.")
                descending = False
                nxt = self.peek()
                if nxt is not None and nxt.keyword("ASC", "DESC"):
                    descending = self.take().keyword("DESC")
                order.append(("key" if name == "issuekey" else name, descending))
                nxt = self.peek()
                if nxt is None or not (nxt.kind == "op" and nxt.text == ","):
                    break
                self.take()
        if self.peek() is not None:
            raise JqlError(f"Error in the JQL Query: unexpected {self.take().text!r}.")
        return Query(where, tuple(order))

    def disjunction(self) -> Predicate:
        parts = [self.conjunction()]
        while (token := self.peek()) is not None and token.keyword("OR"):
            self.take()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda r: any(p(r) for p in parts))

    def conjunction(self) -> Predicate:
        parts = [self.unary()]
        while (token := self.peek()) is not None and token.keyword("AND"):
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda r: all(p(r) for p in parts))

    def unary(self) -> Predicate:
        token = self.take()
        if token.keyword("NOT"):
            inner = self.unary()
            return lambda r: not inner(r)
        if token.kind == "op" and token.text == "(":
            inner = self.disjunction()
            closing = self.take()
            if not (closing.kind == "op" and closing.text == ")"):
                raise JqlError("Error in the JQL Query: Expecting ')'.")
            return inner
        return self.clause(token.text.lower())

    def clause(self, name: str) -> Predicate:
        if name in _DATE_FIELDS:
            return self.date_clause(_DATE_FIELDS[name])
        if name not in _TEXT_FIELDS:
            raise JqlError(
                f"Field '{name}' does not exist or you do not have permission to view it."
            )
        field = _TEXT_FIELDS[name]
        op = self.take()
        if op.keyword("IS"):
            negate = (nxt := self.peek()) is not None and nxt.keyword("NOT")
            if negate:
                self.take()
            if not self.take().keyword("EMPTY", "NULL"):
                raise JqlError(f"Error in the JQL Query: Expecting EMPTY after IS for '{name}'.")
            return lambda r: (r.get(field) is None) != negate
        if op.keyword("NOT"):
            if not self.take().keyword("IN"):
                raise JqlError("Error in the JQL Query: Expecting 'IN' after 'NOT'.")
            values = self.value_list()
            return lambda r: _norm(r.get(field)) not in values
        if op.keyword("IN"):
            values = self.value_list()
            return lambda r: _norm(r.get(field)) in values
        if op.kind == "op" and op.text in ("=", "!="):
            value = self.value()
            equal = op.text == "="
            return lambda r: (_norm(r.get(field)) == value) == equal
        raise JqlError(f"The operator '{op.text}' is not supported by the '{name}' field.")

    def value(self) -> str:
        token = self.take()
        if token.kind == "op":
            raise JqlError(f"Error in the JQL Query: Expecting a value, not {token.text!r}.")
        if token.kind == "word" and token.text.lower() == "currentuser()":
            return (self.current_user or "").lower()
        return token.text.lower()

    def value_list(self) -> set[str]:
        opening = self.take()
        if not (opening.kind == "op" and opening.text == "("):
            raise JqlError("Error in the JQL Query: Expecting '(' after IN.")
        values = {self.value()}
        while (token := self.take()).kind == "op" and token.text == ",":
            values.add(self.value())
        if not (token.kind == "op" and token.text == ")"):
            raise JqlError("Error in the JQL Query: Expecting ')' to close the list.")
        return values

    def date_clause(self, field: str) -> Predicate:
        op = self.take()
        if op.kind != "op" or op.text not in ("=", "!=", "<", "<=", ">", ">="):
            raise JqlError(f"The operator '{op.text}' is not supported by the '{field}' field.")
        when = self.date(self.take())
        compare: dict[str, Callable[[datetime, datetime], bool]] = {
            "=": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b,
        }
        check = compare[op.text]
        return lambda r: r.get(field) is not None and check(r[field], when)

    def date(self, token: _Token) -> datetime:
        if token.kind == "word" and token.text.isdigit():
            return _EPOCH + timedelta(milliseconds=int(token.text))
        for fmt in _DATE_FORMATS:
            try:
                return datetime.strptime(token.text, fmt).replace(tzinfo=self.zone)
            except ValueError:
                continue
        raise JqlError(
            f"Date value '{token.text}' for field is invalid. Valid formats include: "
            "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period "
            "format e.g. '-5d', '4w 2d'."
        )


def _norm(value: object) -> str | None:
    return value.lower() if isinstance(value, str) else None


def parse(text: str, *, zone: tzinfo = UTC, current_user: str | None = None) -> Query:
    """Parse `text`; dates without a zone are read in `zone`, the searching user's."""
    return _Parser(text, zone, current_user).query()
