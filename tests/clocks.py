"""A clock a test moves by hand, for the emulators' `clock` hook."""

from __future__ import annotations

from datetime import datetime, timedelta


class FakeClock:
    """Reads `now`, which moves only when the test calls advance()."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
