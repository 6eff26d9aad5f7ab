"""Quarantine you can see: an item that cannot be read is listed with its source, ref, URL,
reason and times, counted per source in `status`, and leaves quarantine (recorded as a
`released` event) when it reads cleanly again."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from syncd.sandbox.server import Fault
from tests.toolworld import REPO, ToolWorld, tool_world  # noqa: F401  (fixture)

SYNCD = str(Path(sys.executable).with_name("syncd"))


def no_title(body: Any) -> Any:
    for issue in body if isinstance(body, list) else [body]:
        if isinstance(issue, dict) and issue.get("number") == 1:
            issue["title"] = None
    return body


def syncd(world: ToolWorld, *args: str) -> str:
    result = subprocess.run(
        [SYNCD, "--ledger", str(world.path / "ledger.db"), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_quarantine_is_listed_counted_and_released(tool_world: ToolWorld) -> None:  # noqa: F811
    world = tool_world
    world.sync("github")
    damage = world.github.faults.add(Fault(method="GET", times=None, rewrite=no_title))
    for owner in ("bob", "carol"):  # read badly twice: one row, seen twice
        time.sleep(1.1)  # GitHub stamps changes to the second
        world.set_owner("github", 1, [owner])
        world.sync("github")

    (row,) = json.loads(syncd(world, "quarantine", "--json"))
    assert row["source"] == "github"
    assert row["ref"] == f"{REPO}#1"
    assert row["url"].endswith("/acme/api/issues/1")  # read cleanly before
    assert row["request"] == "REQ-1"
    assert "title is null, not a JSON string" in row["reason"]
    assert row["times"] == 2
    assert row["first_seen_at"] <= row["last_seen_at"]
    assert row["released_at"] is None
    table = syncd(world, "quarantine")
    assert "SOURCE" in table.splitlines()[0]
    assert f"{REPO}#1" in table
    assert "title is null" in table
    status = syncd(world, "status")
    assert "github: 1 item in quarantine (see `syncd quarantine --source github`)" in status
    (source,) = [s for s in json.loads(syncd(world, "status", "--json"))["sources"]]
    assert source["quarantined"] == 1
    assert world.request_owner("github", 1) == "alice"  # nothing applied meanwhile

    # Fixed in the tool: the next read is clean, the item leaves quarantine.
    world.github.faults.clear()
    del damage
    time.sleep(1.1)
    world.set_owner("github", 1, ["dave"])
    world.sync("github")
    assert world.request_owner("github", 1) == "dave"
    assert json.loads(syncd(world, "quarantine", "--json")) == []
    assert syncd(world, "quarantine").strip() == "no items in quarantine"
    (released,) = json.loads(syncd(world, "quarantine", "--all", "--json"))
    assert released["released_at"] is not None
    kinds = [e["kind"] for e in json.loads(syncd(world, "show", "REQ-1", "--json"))["events"]]
    assert kinds.count("quarantined") == 1
    assert kinds.count("released") == 1
    assert kinds.index("quarantined") < kinds.index("released")
    assert json.loads(syncd(world, "status", "--json"))["sources"][0]["quarantined"] == 0
