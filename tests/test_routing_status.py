"""The systemd STATUS line counts handoffs nobody picked up in time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from syncd import dispatch
from syncd.daemon import Daemon
from syncd.ledger import now_utc
from syncd.models import Observation, Page
from tests.test_service import RecordingNotifier, Service, service

__all__ = ["service"]


def test_the_status_line_counts_overdue_handoffs(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.config.write_text(service.config.read_text() + '\n[acceptance]\naccept_within = "1m"\n')
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(service.creds))
    notifier = RecordingNotifier()
    daemon = Daemon(service.config, notifier=notifier)
    try:
        engine = daemon.engine
        then = now_utc() - timedelta(hours=1)
        obs = Observation(
            source="api",
            ref="acme/api#1",
            url="https://github.com/acme/api/issues/1",
            title="Printer",
            state="open",
            owners=("alice-gh",),
            updated_at=then,
            keys=("github:acme/api#1",),
        )
        daemon.ledger.apply_page("api", "github", Page([obs]), engine.directory, now=then)
        daemon.ledger.assign(
            "REQ-1", "bob", actor="ops", note=None, now=then + timedelta(seconds=1)
        )
        daemon._tick()
        assert "overdue" not in notifier.sent[-1][0]
        report = dispatch.step(daemon.ledger, daemon.config, engine.directory)
        assert report.overdue == ["REQ-1"]
        daemon._tick()
        assert "1 handoff overdue" in notifier.sent[-1][0]
    finally:
        daemon.engine.close()
        daemon.reader.close()
        daemon.ledger.close()
