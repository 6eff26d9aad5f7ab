"""`syncd demo --story routing` runs the real daemon against emulated GitHub and Jira and
exits 0 only when unowned work was routed, one handoff accepted and one escalated once."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.syncdproc import syncd

pytestmark = pytest.mark.slow


def test_the_routing_story_reaches_its_end_state(tmp_path: Path) -> None:
    result = syncd(
        "demo", "--story", "routing", "--keep", env={"TMPDIR": str(tmp_path)}, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "syncd routed acme/api#1 to Bob" in out
    # Only Carol's handoff is left unaccepted; Bob's was accepted by his Jira comment.
    unaccepted = out.split("handoffs nobody accepted in time", 1)[1].split("==>", 1)[0]
    assert "REQ-2    open   carol" in unaccepted
    assert "REQ-1" not in unaccepted
    assert "handoff to bob accepted via ops by bob [comment in ops]" in out
    assert "Carol Diaz, please act on it or hand it on" in out
    # --keep ends with commands to explore what the story left; each of them works.
    (kept,) = tmp_path.iterdir()
    lines = out.splitlines()
    start = lines.index(f"==> kept {kept}; to explore the ledger the story left, run:")
    commands = [
        shlex.split(line, comments=True) for line in lines[start + 1 :] if line.startswith("  ")
    ]
    assert [c[0] for c in commands][-1] == "less"
    assert "route" in {c[3] for c in commands[:-1]}
    for command in commands[:-1]:
        ran = syncd(*command[1:])
        assert (ran.returncode, ran.stderr) == (0, ""), command
        assert ran.stdout, command
