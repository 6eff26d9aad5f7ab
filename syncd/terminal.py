"""What the terminal in front of a command can show: its width, and whether to use colour.

Colour is used only when stdout is a terminal, `NO_COLOR` is unset or empty
(https://no-color.org) and TERM is not "dumb". Views are fitted to the width only on a
terminal (or when COLUMNS says so): a pipe or a file gets whole lines.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from collections.abc import Container
from dataclasses import dataclass
from typing import Literal, TextIO

import click

Style = Literal["bad", "warn", "dim"]
_STYLES: dict[str, dict[str, object]] = {
    "bad": {"fg": "red", "bold": True},
    "warn": {"fg": "yellow"},
    "dim": {"dim": True},
}


def colour_wanted(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


@dataclass(frozen=True)
class Terminal:
    tty: bool
    width: int | None  # None: no fitting (a pipe or a file)
    height: int | None
    colour: bool

    @classmethod
    def detect(cls, stream: TextIO | None = None) -> Terminal:
        out = stream or sys.stdout
        try:
            tty = out.isatty()
        except (AttributeError, ValueError):
            tty = False
        fit = tty or bool(os.environ.get("COLUMNS"))
        size = shutil.get_terminal_size() if fit else None
        return cls(
            tty=tty,
            width=size.columns if size else None,
            height=size.lines if size and tty else None,
            colour=tty and colour_wanted(out),
        )

    def paint(self, text: str, style: Style | None) -> str:
        if not self.colour or style is None:
            return text
        return click.style(text, **_STYLES[style])  # type: ignore[arg-type]

    def fit(self, line: str) -> str:
        """One line clipped to the width, marked with "…" where it was cut."""
        if self.width is None or len(line) <= self.width:
            return line
        return line[: max(self.width - 1, 1)] + "…"

    def lines(
        self,
        text: str,
        styles: dict[int, Style] | None = None,
        *,
        cut: Container[int] | None = None,
    ) -> str:
        """A view fitted line by line, with line i painted in styles[i]. Lines in `cut`
        (every line when it is None), such as a table's rows, are clipped to the width; the
        others are prose, an error say, and wrap, indented, so that nothing of it is lost."""
        styles = styles or {}
        out = []
        for i, line in enumerate(text.split("\n")):
            if cut is None or i in cut or self.width is None or len(line) <= self.width:
                out.append(self.paint(self.fit(line), styles.get(i)))
                continue
            for part in textwrap.wrap(
                line, self.width, subsequent_indent="  ", break_on_hyphens=False
            ):
                out.append(self.paint(part, styles.get(i)))
        return "\n".join(out)
