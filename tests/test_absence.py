"""Absence is never a change: an answer that leaves out who owns an item, or says it in a
shape syncd cannot read, quarantines that item and changes nothing anywhere.

Per tool, after a first sync (both items owned by alice), a person gives item 1 to bob and
item 2 to carol; the tool's next answer about item 1 is damaged on the wire (the emulator's
rewrite hook). Item 1 must be quarantined with its reason, its request must keep alice and
gain no event, nothing may be written to any tool, and item 2's change must be applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from syncd.sandbox.server import Fault
from tests.toolworld import ToolWorld, tool_world  # noqa: F401  (fixture)

Damage = Callable[[dict[str, Any]], None]


def _drop(key: str) -> Damage:
    return lambda obj: obj.pop(key)


def _set(key: str, value: Any) -> Damage:
    return lambda obj: obj.__setitem__(key, value)


# Per tool: where the owners sit in an item, and the damage done to them.
CASES: list[tuple[str, Damage, str]] = [
    ("github", _drop("assignees"), "assignees is missing"),
    ("github", _set("assignees", {"login": "bob-gh"}), "assignees is a JSON object"),
    ("github", _set("assignees", [{"id": 4}]), "without a valid login"),
    ("jira", _drop("assignee"), "assignee is missing"),
    ("jira", _set("assignee", ["bob"]), "assignee is a JSON array"),
    ("jira", _set("assignee", {"displayName": "Bob"}), "no valid accountId"),
    ("trello", _drop("idMembers"), "idMembers is missing"),
    ("trello", _set("idMembers", "bobtrello"), "idMembers is a JSON string"),
    ("trello", _set("idMembers", ["5f0000000000000000000999"]), "not a member of the board"),
]


def damaging(world: ToolWorld, source: str, damage: Damage) -> Callable[[Any], Any]:
    """A rewrite that damages item 1 wherever it appears in an answer."""
    ref = world.ref(source, 1)

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for entry in node:
                visit(entry)
        elif isinstance(node, dict):
            if source == "github" and node.get("number") == 1 and "assignees" in node:
                damage(node)
            elif (
                source == "jira" and node.get("key") == ref and isinstance(node.get("fields"), dict)
            ):
                damage(node["fields"])
            elif source == "trello" and node.get("id") == ref and "idMembers" in node:
                damage(node)
            else:
                for value in node.values():
                    visit(value)

    def rewrite(body: Any) -> Any:
        visit(body)
        return body

    return rewrite


@pytest.mark.parametrize(("source", "damage", "reason"), CASES, ids=[c[2] for c in CASES])
def test_an_unreadable_owner_field_quarantines_the_item_and_changes_nothing(
    tool_world: ToolWorld,  # noqa: F811
    source: str,
    damage: Damage,
    reason: str,
) -> None:
    world = tool_world
    world.sync()
    assert world.request_owner(source, 1) == world.request_owner(source, 2) == "alice"
    events_before = world.ledger.rows("SELECT count(*) AS n FROM events")[0]["n"]
    writes_before = world.writes()
    world.set_owner(source, 1, ["bob"])
    world.set_owner(source, 2, ["carol"])
    world.emulator(source).faults.add(
        Fault(method="GET", times=None, rewrite=damaging(world, source, damage))
    )
    with capture_logs() as logs:
        world.sync(source)
    (poll,) = [e for e in logs if e["event"] == "poll"]
    named = poll["quarantined_items"]
    assert len(named) == 1
    assert named[0].startswith(f"{world.ref(source, 1)}: ")
    assert reason in named[0]

    (quarantined,) = world.ledger.rows("SELECT * FROM quarantine WHERE source = ?", (source,))
    assert quarantined["ref"] == world.ref(source, 1)
    assert reason in quarantined["reason"]
    assert world.request_owner(source, 1) == "alice"  # never "unassigned", never bob
    assert world.request_owner(source, 2) == "carol"  # the rest of the page applied
    new_events = world.ledger.rows(
        "SELECT e.kind, e.to_value, l.ref FROM events e JOIN links l ON l.request_id = e.request_id "
        "WHERE e.id > ? AND l.source = ?",
        (events_before, source),
    )
    # Item 1's request only hears why it stopped moving; every change is item 2's.
    assert {(e["ref"], e["kind"]) for e in new_events if e["kind"] != "owner_changed"} == {
        (world.ref(source, 1), "quarantined")
    }, new_events
    changed = {e["ref"] for e in new_events if e["kind"] == "owner_changed"}
    assert changed == {world.ref(source, 2)}, new_events
    assert world.ledger.rows("SELECT * FROM outbox WHERE status = 'pending'") == []
    assert world.writes() == writes_before  # nothing written anywhere
    assert world.owners(source, 1) == ["bob"]  # the person's change stands in the tool
