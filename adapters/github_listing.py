"""GitHub: where a pull of one repository's issue listing stands, and the cursor that
carries it to the next pull (see the cursor in syncd.adapters.github's docstring). Pure: the
adapter reads the pages and hands each issue's time and fingerprint here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from syncd.adapters.base import Unreadable, timestamp
from syncd.models import Cursor

# Issues remembered at the boundary. More than this sharing one second means a bulk edit;
# past the cap they are simply emitted again next cycle, which the ledger treats as no change.
_MAX_SEEN = 1000

# GitHub stamps updated_at to the second. A second this far behind the server's clock can
# receive no further changes that a listing would not already show.
_TICK = timedelta(seconds=1)
_SETTLED = timedelta(seconds=60)


@dataclass
class Listing:
    """Where one pull stands: what it has read, and where the next pull should start."""

    since: datetime | None
    seen: dict[int, str]
    start_since: datetime | None = None
    # When each issue was first read in this pull, to notice pagination shifting under us:
    # one small entry per issue, never the issues themselves.
    first_read: dict[int, datetime] = field(default_factory=dict)
    # Set when issues may have been skipped: the next pull must start no later than this.
    floor: datetime | None = None

    @classmethod
    def resume(cls, cursor: Cursor | None) -> tuple[Listing, str | None]:
        """The listing a stored cursor describes, and its etag. A cursor that cannot be read
        starts from the beginning: reading everything again is slow but changes nothing."""
        cursor = cursor if isinstance(cursor, dict) else {}
        try:
            since = parse_time(cursor["since"]) if cursor.get("since") else None
        except Unreadable:
            return cls(None, {}), None
        raw_seen = cursor.get("seen")
        seen = {
            int(k): v
            for k, v in (raw_seen.items() if isinstance(raw_seen, dict) else ())
            if isinstance(k, str) and k.isdigit() and isinstance(v, str)
        }
        etag = cursor.get("etag")
        return cls(since, seen, start_since=since), etag if isinstance(etag, str) else None

    def is_repeat(self, number: int, updated_at: datetime, fingerprint: str) -> bool:
        if self.since is None or updated_at > self.since:
            return False
        # Older than the bookmark: already read, and re-reading it could only roll it back.
        return updated_at < self.since or self.seen.get(number) == fingerprint

    def record(self, number: int, updated_at: datetime, fingerprint: str) -> None:
        first = self.first_read.setdefault(number, updated_at)
        if first != updated_at:
            # An issue read earlier in this pull changed and moved to the end of the listing.
            # GitHub pages by offset, so everything after its old place moved up by one, and
            # the issue that crossed the page boundary was never seen. It was updated no
            # earlier than this old time, so the next pull starts from there again.
            self.floor = first if self.floor is None else min(self.floor, first)
        if self.since is None or updated_at > self.since:
            self.since, self.seen = updated_at, {}
        if number in self.seen or len(self.seen) < _MAX_SEEN:
            self.seen[number] = fingerprint

    def settle(self, server_now: datetime | None) -> None:
        """Step past the boundary second once GitHub's clock has left it well behind.

        While the boundary second is recent, a change can still land in it, so its issues
        are kept in `seen` and read again each cycle. Once it is older than _SETTLED by the
        server's own clock, every change in it is already visible and was read in this pull,
        so `since` moves one tick past it. Without this, a bulk edit that left hundreds of
        issues in one second would be re-read, page after page, every cycle until one of
        them changed again. Without a server clock (no Date header) nothing moves: the local
        clock may not agree with the one that stamped updated_at.
        """
        if (
            self.floor is None
            and self.seen
            and self.since is not None
            and server_now is not None
            and self.since + _TICK <= server_now - _SETTLED
        ):
            self.since, self.seen = self.since + _TICK, {}

    @property
    def unmoved(self) -> bool:
        """True when the next pull will send the same first request as this one did."""
        return self.floor is None and self.since == self.start_since

    def cursor(self, etag: str | None = None) -> Cursor:
        if self.floor is not None:
            # Issues read since the floor are read again; the ledger takes them as no change.
            return {"since": format_time(self.floor)}
        out: Cursor = {}
        if self.since is not None:
            out["since"] = format_time(self.since)
            out["seen"] = {str(n): fp for n, fp in self.seen.items()}
        if etag is not None:
            out["etag"] = etag
        return out


def parse_time(value: object) -> datetime:
    return timestamp(value, "updated_at")


def format_time(when: datetime) -> str:
    # GitHub documents `since` as YYYY-MM-DDTHH:MM:SSZ; fractions appear only from emulators.
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")
