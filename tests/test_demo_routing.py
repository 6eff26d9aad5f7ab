"""`syncd demo --story routing` runs the real daemon against emulated GitHub and Jira and
exits 0 only when unowned work was routed, one handoff accepted and one escalated once."""

from __future__ import annotations

import pytest

from tests.syncdproc import syncd

pytestmark = pytest.mark.slow


def test_the_routing_story_reaches_its_end_state() -> None:
    result = syncd("demo", "--story", "routing", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "syncd routed acme/api#1 to Bob" in out
    # Only Carol's handoff is left unaccepted; Bob's was accepted by his Jira comment.
    unaccepted = out.split("handoffs nobody accepted in time", 1)[1].split("==>", 1)[0]
    assert "REQ-2    open   carol" in unaccepted
    assert "REQ-1" not in unaccepted
    assert "handoff to bob accepted via ops by bob [comment in ops]" in out
    assert "Carol Diaz, please act on it or hand it on" in out
