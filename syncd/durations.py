"""Parsing the human durations used in config and on the command line ("90s", "5m", "2h", "7d")."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str | int | float) -> timedelta:
    """Seconds as a number, or a string of number+unit parts such as "1h30m"."""
    if isinstance(text, bool):
        raise ValueError('expected a duration such as 60, "90s", "5m" or "2h"')
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        s = text.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", s):
            seconds = float(s)
        elif s and _PART.sub("", s) == "":
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(s))
        else:
            raise ValueError(f'{text!r} is not a duration; use e.g. 60, "90s", "5m", "2h"')
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return timedelta(seconds=seconds)
