"""Parsing the human durations used in config and on the command line ("90s", "1h30m", "2w").

A duration is seconds as a number, or one or more number+unit parts with units from largest
to smallest, each at most once: w (weeks), d (days), h (hours), m (minutes), s (seconds).
"1h30m" and "2d12h" are durations; "30m1h" (out of order) and "2h1h" (repeated) are refused,
since they are more likely a typo than a meaning.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

# Largest first: the order parts must come in.
UNITS: dict[str, int] = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
UNIT_NAMES = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
# What the error message and --help say a duration looks like.
HINT = "a number of seconds, or parts such as 90s, 5m, 2h, 3d, 1w, 1h30m (units w d h m s, largest first)"
# timedelta's own ceiling is 999,999,999 days; stop well before it with a plain message.
MAX_SECONDS = 100 * 365 * 86400

_NUMBER = r"\d+(?:\.\d+)?"
_PART = re.compile(rf"({_NUMBER})([a-z])")


def _parts(s: str, original: str) -> float:
    pos = 0
    seconds = 0.0
    seen: list[str] = []
    for match in _PART.finditer(s):
        if match.start() != pos:
            break
        number, unit = match.groups()
        if unit not in UNITS:
            raise ValueError(f"{original!r}: unknown unit {unit!r}; use {HINT}")
        if unit in seen:
            raise ValueError(f"{original!r}: {unit!r} appears twice; use {HINT}")
        if seen and UNITS[unit] > UNITS[seen[-1]]:
            raise ValueError(
                f"{original!r}: {unit!r} comes after {seen[-1]!r}; "
                "write the largest unit first, as in 1h30m"
            )
        seen.append(unit)
        seconds += float(number) * UNITS[unit]
        pos = match.end()
    if not seen or pos != len(s):
        raise ValueError(f"{original!r} is not a duration; use {HINT}")
    return seconds


def parse_duration(text: str | int | float) -> timedelta:
    """Seconds as a number, or a string of number+unit parts such as "1h30m"."""
    if isinstance(text, bool):
        raise ValueError(f"expected a duration: {HINT}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        s = text.strip().lower().replace(" ", "")
        seconds = float(s) if re.fullmatch(_NUMBER, s) else _parts(s, text)
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is not a duration; use {HINT}")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_SECONDS:
        raise ValueError(f"{text!r} is too long; at most 100 years ({MAX_SECONDS // 86400}d)")
    return timedelta(seconds=seconds)
