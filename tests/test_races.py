"""A person's change racing a write-back is never lost, in each tool.

The story per tool: item 1 is carol's (syncd has seen it), an operator hands it to dave, and
while syncd writes dave, a person gives the item to alice. The emulator's `before` hook
lands the person's edit at an exact moment: between syncd's read of the owners and its
write, or during the removal of the old owner (Jira: just after its one PUT). syncd must
notice that the tool's answer is not what its own change explains, record the race, leave
the snapshot alone, and the next poll must make alice the owner (her change is the later).
Where syncd's add sits beside alice it is taken back off; in Jira, whose one assignee a PUT
simply replaces, the changelog shows whom the PUT replaced and alice is put back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from syncd.cycle import Engine
from syncd.sandbox.server import Fault, Request
from tests.toolworld import ToolWorld, tool_world  # noqa: F401  (fixture)

WRITE = {
    "github": ("POST", r"/issues/1/assignees$"),
    "jira": ("PUT", r"/issue/OPS-1/assignee$"),
    "trello": ("POST", r"/idMembers$"),
}
REMOVAL = {"github": ("DELETE", r"/issues/1/assignees$"), "trello": ("DELETE", r"/idMembers/")}


def request_key(world: ToolWorld, source: str, n: int) -> str:
    rows = world.ledger.rows(
        "SELECT r.key FROM requests r JOIN links l ON l.request_id = r.id "
        "WHERE l.source = ? AND l.ref = ?",
        (source, world.ref(source, n)),
    )
    key: str = rows[0]["key"]
    return key


def snapshot(world: ToolWorld, source: str) -> str | None:
    rows = world.ledger.rows(
        "SELECT snap_owner FROM links WHERE source = ? AND ref = ?", (source, world.ref(source, 1))
    )
    value: str | None = rows[0]["snap_owner"]
    return value


def carols_item_handed_to_dave(world: ToolWorld, source: str) -> str:
    world.sync()
    world.set_owner(source, 1, ["carol"])
    world.sync(source)
    key = request_key(world, source, 1)
    assert world.request_owner(source, 1) == "carol"
    world.ledger.assign(key, "dave", actor="ops", note=None)
    # The person acts a second later than the operator: times are compared in whole
    # seconds, so her change is then strictly the later one.
    time.sleep(1.1)
    return key


def hook(world: ToolWorld, source: str, method: str, path: str, action: Callable[[], None]) -> None:
    def before(_request: Request) -> None:
        action()

    world.emulator(source).faults.add(Fault(method=method, path=path, before=before))


def person_gives_it_to_alice(world: ToolWorld, source: str) -> Callable[[], None]:
    return lambda: world.set_owner(source, 1, ["alice"])


def check_kept(world: ToolWorld, source: str, key: str) -> None:
    # Exactly the person's choice: syncd took its own add back off where it sat beside it.
    assert world.owners(source, 1) == ["alice"]
    races = world.ledger.rows("SELECT detail FROM events WHERE kind = 'race'")
    assert len(races) == 1, races
    assert "a person changed the owners" in races[0]["detail"]
    assert snapshot(world, source) != "dave"  # not taken for syncd's own write
    world.sync(source)
    assert world.request_owner(source, 1) == "alice", world.ledger.rows(
        "SELECT kind, from_value, to_value, detail FROM events WHERE field = 'owner'"
    )
    last = world.ledger.rows(
        "SELECT kind, to_value, source FROM events e JOIN requests r ON r.id = e.request_id "
        "WHERE r.key = ? AND e.kind IN ('owner_changed', 'conflict') ORDER BY e.id DESC LIMIT 1",
        (key,),
    )
    assert last[0]["to_value"] == "alice"
    assert last[0]["source"] == source
    # Nothing owed any more, and nothing written back over alice.
    world.sync()
    assert world.ledger.rows("SELECT * FROM outbox WHERE status = 'pending'") == []
    assert world.request_owner(source, 1) == "alice"


@pytest.mark.parametrize("source", ["github", "jira", "trello"])
def test_a_person_changing_the_owner_between_read_and_write_is_kept(
    tool_world: ToolWorld,  # noqa: F811
    source: str,
) -> None:
    world = tool_world
    key = carols_item_handed_to_dave(world, source)
    method, path = WRITE[source]
    hook(world, source, method, path, person_gives_it_to_alice(world, source))
    assert world.engine is not None
    stats = world.engine.drain(source)
    assert stats.raced == 1
    check_kept(world, source, key)


@pytest.mark.parametrize("source", ["github", "jira", "trello"])
def test_a_person_changing_the_owner_during_the_removal_is_kept(
    tool_world: ToolWorld,  # noqa: F811
    source: str,
) -> None:
    world = tool_world
    key = carols_item_handed_to_dave(world, source)
    if source == "jira":
        # One PUT replaces the assignee: the person's edit lands just after it, before
        # syncd reads the result back.
        def after_put() -> None:
            hook(world, "jira", "GET", r"/issue/OPS-1$", person_gives_it_to_alice(world, source))

        hook(world, "jira", *WRITE["jira"], after_put)
    else:
        hook(world, source, *REMOVAL[source], person_gives_it_to_alice(world, source))
    assert world.engine is not None
    stats = world.engine.drain(source)
    assert stats.raced == 1
    check_kept(world, source, key)


class Crash(BaseException):
    """The process dying between two requests of one write."""


@pytest.mark.parametrize("source", ["github", "trello"])
def test_a_restart_between_add_and_remove_sends_only_the_removal(
    tool_world: ToolWorld,  # noqa: F811
    source: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = tool_world
    carols_item_handed_to_dave(world, source)
    assert world.engine is not None
    client = world.engine.adapters[source].client  # type: ignore[attr-defined]
    send = client.request

    def dies_before_delete(method: str, url: str, **kw: Any) -> Any:
        if method == "DELETE":
            raise Crash
        return send(method, url, **kw)

    monkeypatch.setattr(client, "request", dies_before_delete)
    with pytest.raises(Crash):
        world.engine.drain(source)
    assert sorted(world.owners(source, 1)) == ["carol", "dave"]
    # A new process on the same ledger.
    restarted = Engine(world.engine.config, world.ledger)
    try:
        emulator = world.emulator(source)
        emulator.reset_counts()
        restarted.drain(source)
    finally:
        restarted.close()
    assert emulator.count("POST") == 0  # dave is already there: no second add
    assert emulator.count("DELETE") == 1
    assert world.owners(source, 1) == ["dave"]
    assert world.ledger.rows("SELECT * FROM events WHERE kind = 'race'") == []


def before_syncd_writes(world: ToolWorld, source: str, action: Callable[[], None]) -> None:
    """Land `action` in the window just before syncd's write: on GitHub just before the
    adapter reads the issue again (after the outbox's read, across the wait between
    writes); in Jira just before its PUT."""
    if source == "jira":
        hook(world, "jira", *WRITE["jira"], action)
        return
    hook(
        world,
        source,
        "GET",
        r"/issues/1$",
        lambda: hook(world, source, "GET", r"/issues/1$", action),
    )


@pytest.mark.parametrize("source", ["github", "jira"])
def test_a_person_unassigning_the_old_owner_before_the_write_is_kept(
    tool_world: ToolWorld,  # noqa: F811
    source: str,
) -> None:
    """The person takes carol off while syncd writes dave. Writing dave and removing carol
    would leave exactly what syncd's own change explains: only carol found already gone
    (GitHub: the read right before writing, which then writes nothing; Jira: the changelog,
    and the person's choice is put back) tells of the person."""
    world = tool_world
    key = carols_item_handed_to_dave(world, source)
    before_syncd_writes(world, source, lambda: world.set_owner(source, 1, []))
    assert world.engine is not None
    stats = world.engine.drain(source)
    assert stats.raced == 1
    assert world.owners(source, 1) == []  # what the person left
    races = world.ledger.rows("SELECT detail FROM events WHERE kind = 'race'")
    assert len(races) == 1, races
    assert snapshot(world, source) != "dave"
    if source == "github":  # it wrote nothing, and the timeline does not say it did
        assert world.ledger.rows("SELECT * FROM events WHERE kind = 'writeback'") == []
    world.sync(source)
    assert world.request_owner(source, 1) is None
    last = world.ledger.rows(
        "SELECT kind, to_value, source FROM events e JOIN requests r ON r.id = e.request_id "
        "WHERE r.key = ? AND e.kind IN ('owner_changed', 'conflict') ORDER BY e.id DESC LIMIT 1",
        (key,),
    )
    assert last[0]["to_value"] is None
    assert last[0]["source"] == source
    world.sync()
    assert world.ledger.rows("SELECT * FROM outbox WHERE status = 'pending'") == []
    assert world.owners(source, 1) == []


def test_trello_tells_of_an_owner_already_taken_off_when_syncd_removes_them(
    tool_world: ToolWorld,  # noqa: F811
) -> None:
    """Trello: the person takes carol off just as syncd adds dave. Its removal then answers
    "not on the card": the race is recorded, not taken for syncd's own write. syncd's dave
    stays (it cannot tell whether the person saw it), so this is visible, not undone."""
    world = tool_world
    carols_item_handed_to_dave(world, "trello")
    hook(world, "trello", *WRITE["trello"], lambda: world.set_owner("trello", 1, []))
    assert world.engine is not None
    assert world.engine.drain("trello").raced == 1
    races = world.ledger.rows("SELECT detail FROM events WHERE kind = 'race'")
    assert len(races) == 1, races
    assert "were already off it" in races[0]["detail"]
    assert snapshot(world, "trello") == "carol"  # the next poll reads the change as the tool's
