"""Prometheus metrics for `/metrics` on the daemon's listener.

Two kinds of figure:

- What the daemon counts as it runs (polls, their duration, errors by kind, requests by
  status, webhooks): prometheus_client counters and a histogram, in this process's memory,
  so they start from zero at each start as Prometheus expects of counters.
- What the ledger holds (last poll, rate budget, outbox, dead letters, quarantine, handoffs,
  routed and overdue handoffs): read at scrape time from a read-only connection, so they
  are the truth of the file, whichever process wrote it.

Conventions: the `syncd_` prefix, base units (`_seconds`, `_total`, timestamps in seconds
since the epoch), and only low-cardinality labels (`source`: a configured source name;
`kind`, `status`, `result`, `state`: small fixed sets). No secret, title or handle is ever a
label.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from syncd.health import short_reason
from syncd.ledger import Ledger, now_utc, parse_iso
from syncd.queries import awaiting_acceptance, handoff_counts, source_status

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_CODE = re.compile(r"^\d{3}$")


def error_kind(error: str | None) -> str:
    """A poll error as a label value from a small set: "http_429", "timeout", "internal",
    "other"; never the message (it can name items or hosts)."""
    reason = short_reason(error)
    if _CODE.match(reason):
        return f"http_{reason}"
    if reason in ("timeout", "internal error"):
        return reason.split()[0]
    return "other"


def request_status(key: str) -> str:
    """The status part of an adapter's request counter key ("GET 200" -> "200")."""
    status = key.rsplit(" ", 1)[-1]
    return status if _CODE.match(status) or status.isalpha() else "other"


def _ts(text: str | None) -> float | None:
    dt = parse_iso(text)
    return dt.timestamp() if dt else None


class LedgerCollector(Collector):
    """Figures read from the ledger at each scrape."""

    def __init__(
        self,
        ledger_path: Callable[[], Path],
        accept_within: Callable[[str], timedelta | None] | None,
    ) -> None:
        self.ledger_path = ledger_path
        self.accept_within = accept_within

    def collect(self) -> Iterator[Metric]:
        now = now_utc()
        with Ledger(self.ledger_path(), readonly=True) as ledger:
            status = source_status(ledger, now=now)
            handoffs = handoff_counts(ledger)
            waiting = awaiting_acceptance(ledger, now=now, within=self.accept_within)
            states = dict(
                ledger.conn.execute("SELECT state, count(*) FROM requests GROUP BY state")
            )
        gauges = {
            name: GaugeMetricFamily(f"syncd_source_{name}", text, labels=["source"])
            for name, text in (
                ("last_poll_timestamp_seconds", "When the source was last polled"),
                ("last_success_timestamp_seconds", "When a poll of the source last succeeded"),
                ("failing", "1 while the source's last poll failed"),
                ("rate_remaining", "Requests left in the source's rate-limit window"),
                ("rate_limit", "The source's rate-limit window size"),
                ("outbox_pending", "Write-backs owed to the source, not yet done"),
                ("dead_letters", "Write-backs to the source that failed for good"),
                ("quarantined_items", "Items of the source that could not be read"),
            )
        }
        for s in status["sources"]:
            name = s["source"]
            values = {
                "last_poll_timestamp_seconds": _ts(s["last_poll_at"]),
                "last_success_timestamp_seconds": _ts(s["last_success_at"]),
                "failing": 1.0 if s["health"] == "failing" else 0.0,
                "rate_remaining": s["rate_remaining"],
                "rate_limit": s["rate_limit"],
                "outbox_pending": s["outbox_pending"],
                "dead_letters": s["outbox_dead"],
                "quarantined_items": s["quarantined"],
            }
            for key, value in values.items():
                if value is not None:
                    gauges[key].add_metric([name], float(value))
        yield from gauges.values()
        handed = CounterMetricFamily(
            "syncd_handoffs",
            "Owner changes recorded, by where they were made (a source, operator or routing)",
            labels=["source"],
        )
        for source, n in sorted(handoffs.items()):
            handed.add_metric([source], n)
        yield handed
        routed = CounterMetricFamily("syncd_routed", "Requests given an owner by a routing rule")
        routed.add_metric([], handoffs.get("routing", 0))
        yield routed
        awaiting = GaugeMetricFamily(
            "syncd_handoffs_awaiting_acceptance", "Open requests whose latest handoff is unaccepted"
        )
        awaiting.add_metric([], len(waiting))
        yield awaiting
        overdue = GaugeMetricFamily(
            "syncd_handoffs_overdue", "Unaccepted handoffs older than accept_within"
        )
        overdue.add_metric([], sum(w["overdue"] for w in waiting))
        yield overdue
        requests = GaugeMetricFamily("syncd_requests", "Requests in the ledger", labels=["state"])
        for state, n in sorted(states.items()):
            requests.add_metric([state], n)
        yield requests


class DaemonMetrics:
    """The daemon's registry: its own counters plus the ledger's figures."""

    def __init__(
        self,
        ledger_path: Callable[[], Path],
        accept_within: Callable[[str], timedelta | None] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.polls = Counter("syncd_polls", "Polls run", ["source"], registry=self.registry)
        self.poll_seconds = Histogram(
            "syncd_poll_duration_seconds",
            "How long a poll and its write-backs took",
            ["source"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.poll_errors = Counter(
            "syncd_poll_errors",
            "Polls that failed, by kind (http_<status>, timeout, internal, other)",
            ["source", "kind"],
            registry=self.registry,
        )
        self.requests = Counter(
            "syncd_source_requests",
            "Requests (IMAP: round trips) made to the source, by status",
            ["source", "status"],
            registry=self.registry,
        )
        self.webhooks = Counter(
            "syncd_webhooks",
            "Webhooks received, by result (accepted, unsigned, bad_signature, replay, "
            "too_large, unknown_source)",
            ["source", "result"],
            registry=self.registry,
        )
        self.registry.register(LedgerCollector(ledger_path, accept_within))

    def polled(
        self, source: str, seconds: float, error: str | None, ok: bool, requests: dict[str, int]
    ) -> None:
        self.polls.labels(source).inc()
        self.poll_seconds.labels(source).observe(seconds)
        if not ok:
            self.poll_errors.labels(source, error_kind(error)).inc()
        for key, n in requests.items():
            if n > 0:
                self.requests.labels(source, request_status(key)).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
