"""The ledger's SQL views (migration 0007_views), read with plain sqlite3 as Datasette would."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from syncd.config import Config, Person
from syncd.cycle import Engine
from syncd.ledger import Ledger
from tests.memtool import Clock, MemAdapter, Tool, install

PEOPLE = [
    Person(id="alice", name="Alice Moreau", handles={"github": "alice-gh", "jira": "acc-alice"}),
    Person(id="bob", name="Bob Stone", handles={"github": "bob-gh", "jira": "acc-bob"}),
]


@pytest.fixture
def world(tmp_path: Path):
    clock = Clock()
    gh, jr = Tool("github", clock), Tool("jira", clock)
    path = tmp_path / "ledger.db"
    ledger = Ledger(path)
    engine = Engine(Config(people=PEOPLE, ledger=path), ledger)
    install(engine, [MemAdapter("api", gh), MemAdapter("ops", jr)])
    yield engine, ledger, gh, jr, path
    ledger.close()


def rows(path: Path, sql: str) -> list[dict[str, object]]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql)]
    finally:
        con.close()


def test_request_board_names_the_owner_and_the_last_handoff(world):
    engine, ledger, gh, jr, path = world
    gh.create("acme/api#1", "Checkout fails", ["alice-gh"])
    jr.create("OPS-7", "Checkout", [], mentions=())
    gh.create("acme/api#2", "Nobody's", [])
    engine.sync_once()
    gh.set_owners("acme/api#1", ["bob-gh"])
    engine.sync_once()
    ledger.assign("REQ-3", "alice", actor="lead", note="covering")
    board = {r["request"]: r for r in rows(path, "SELECT * FROM request_board")}
    assert board["REQ-1"]["owner"] == "bob"
    assert board["REQ-1"]["owner_name"] == "Bob Stone"
    assert board["REQ-1"]["last_handoff_from"] == "alice"
    assert board["REQ-1"]["last_handoff_where"] == "api"
    assert board["REQ-1"]["links"] == "api acme/api#1 mem://api/acme/api#1"
    assert board["REQ-2"]["owner"] is None
    assert board["REQ-2"]["last_handoff_at"] is None
    assert board["REQ-3"]["owner_name"] == "Alice Moreau"
    assert board["REQ-3"]["last_handoff_where"] == "operator"
    assert board["REQ-3"]["last_handoff_note"] == "covering"


def test_handoff_log_is_every_owner_change_with_names_and_acceptance(world):
    engine, ledger, gh, _, path = world
    gh.create("acme/api#1", "Checkout fails", ["alice-gh"])
    engine.sync_once()
    ledger.assign("REQ-1", "bob", actor="lead", note="Alice is out")
    # An `accepted` event after the handoff (routing records these) fills accepted_at.
    with ledger.transaction() as c:
        c.execute(
            "INSERT INTO events (request_id, at, kind, source, actor) "
            "VALUES (1, '2030-01-01T00:00:00.000000Z', 'accepted', 'api', 'bob-gh')"
        )
    log = rows(path, "SELECT * FROM handoff_log")
    assert [(r["from_name"], r["to_name"], r["where"], r["why"]) for r in log] == [
        (None, "Alice Moreau", "api", None),
        ("Alice Moreau", "Bob Stone", "operator", "Alice is out"),
    ]
    # Acceptance belongs to the handoff it follows, not to an earlier one.
    assert log[0]["accepted_at"] is None
    assert log[1]["accepted_at"] == "2030-01-01T00:00:00.000000Z"


def test_every_view_column_is_explained():
    from syncd.schema import MIGRATIONS

    sql = dict(MIGRATIONS)["0007_views"]
    columns = [line.strip() for line in sql.splitlines() if " AS " in line and "VIEW" not in line]
    assert len(columns) > 20
    # Names that say everything themselves may go without a comment; no other column may.
    plain = ("title", "from_name", "to_name", "event_id", "linked_items", "owner_name")
    bare = [c for c in columns if "--" not in c and not c.rstrip(",").endswith(plain)]
    assert bare == []
