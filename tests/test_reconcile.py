"""The reconciler's rules, case by case, on a real ledger file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from syncd.config import Config, Person
from syncd.cycle import Engine
from syncd.ledger import Ledger
from syncd.reconcile import decide_field
from tests.memtool import EPOCH, Clock, MemAdapter, Tool, install

T0 = EPOCH
T1 = EPOCH + timedelta(seconds=1)
T2 = EPOCH + timedelta(seconds=2)


@pytest.mark.parametrize(
    ("seen", "snap", "canon", "seen_at", "canon_at", "new_link", "value", "changed", "conflict"),
    [
        # unchanged at the source: the canonical value stands, even if it differs
        ("a", "a", "a", T1, T0, False, "a", False, False),
        ("a", "a", "b", T1, T0, False, "b", False, False),
        # changed at the source only: it becomes canonical
        ("b", "a", "a", T1, T0, False, "b", True, False),
        # ...unless the canonical value is newer: it moved away and back (A-B-A) meanwhile
        ("b", "a", "a", T0, T1, False, "a", False, True),
        ("b", "a", "a", T1, T1, False, "b", True, False),  # same second: the change stands
        # both changed to the same value: nothing to decide
        ("b", "a", "b", T1, T0, False, "b", False, False),
        # both changed differently: the later side wins, the other is the conflict's loser
        ("b", "a", "c", T2, T1, False, "b", True, True),
        ("b", "a", "c", T1, T2, False, "c", False, True),
        ("b", "a", "c", T1, T1, False, "c", False, True),  # a tie keeps the ledger's value
        # a newly linked item fills gaps but never blanks a value
        ("b", None, None, T0, None, True, "b", True, False),
        (None, None, "c", T2, T0, True, "c", False, False),
        ("b", None, "c", T2, T1, True, "b", True, True),
        ("b", None, "c", T0, T1, True, "c", False, True),
        # unassignment at the source is a change like any other
        (None, "a", "a", T1, T0, False, None, True, False),
    ],
)
def test_decide_field(seen, snap, canon, seen_at, canon_at, new_link, value, changed, conflict):
    d = decide_field(seen, snap, canon, seen_at, canon_at, new_link=new_link)
    assert (d.value, d.changed, d.conflict) == (value, changed, conflict)


PEOPLE = [
    Person(id="alice", handles={"github": "alice-gh", "jira": "acc-alice"}),
    Person(id="bob", handles={"github": "bob-gh", "jira": "acc-bob"}),
    Person(id="carol", handles={"github": "carol-gh"}),  # no jr account
]


@pytest.fixture
def world(tmp_path: Path):
    yield from make_world(tmp_path, "declared")


@pytest.fixture
def any_mention_world(tmp_path: Path):
    yield from make_world(tmp_path, "any-mention")


def make_world(tmp_path: Path, link_on: str):
    clock = Clock()
    gh, jr = Tool("github", clock), Tool("jira", clock)
    ledger = Ledger(tmp_path / "ledger.db")
    config = Config(people=PEOPLE, ledger=tmp_path / "ledger.db", matching={"link_on": link_on})
    engine = Engine(config, ledger)
    install(engine, [MemAdapter("gh", gh), MemAdapter("jr", jr)])
    yield engine, ledger, gh, jr
    ledger.close()


def q(ledger: Ledger, sql: str, *args):
    return ledger.rows(sql, args)


def test_new_item_becomes_request(world):
    engine, ledger, gh, _ = world
    gh.create("acme/api#1", "Checkout fails", ["alice-gh"])
    engine.sync_once()
    (req,) = q(ledger, "SELECT key, title, owner, state FROM requests")
    assert req == {"key": "REQ-1", "title": "Checkout fails", "owner": "alice", "state": "open"}
    kinds = [e["kind"] for e in q(ledger, "SELECT kind FROM events ORDER BY id")]
    assert kinds == ["created", "owner_changed"]


def test_declaration_links_into_one_request(world):
    engine, ledger, gh, jr = world
    gh.create("acme/api#1", "Checkout fails", ["alice-gh"])
    engine.sync_once()
    jr.create("OPS-7", "Checkout incident", [], declared=("github:acme/api#1",))
    engine.sync_once()
    assert q(ledger, "SELECT count(*) AS n FROM requests") == [{"n": 1}]
    assert len(q(ledger, "SELECT * FROM links")) == 2
    # the linked Jira issue had no owner: it is given the canonical one
    assert jr.items["OPS-7"].owners == ["acc-alice"]


def test_reverse_declaration(world):
    """The declaring item arrives first; the declared one joins it when it appears."""
    engine, ledger, gh, jr = world
    jr.create("OPS-7", "Incident", ["acc-bob"], declared=("github:acme/api#9",))
    engine.sync_once()
    gh.create("acme/api#9", "Bug", [])
    engine.sync_once()
    assert q(ledger, "SELECT count(*) AS n FROM requests") == [{"n": 1}]
    assert gh.items["acme/api#9"].owners == ["bob-gh"]


def test_declared_request_id_links(world):
    engine, ledger, gh, jr = world
    gh.create("acme/api#1", "Bug", ["alice-gh"])
    engine.sync_once()
    jr.create("OPS-1", "[REQ-1] Follow-up", [], declared=("req:1",))
    engine.sync_once()
    assert q(ledger, "SELECT count(*) AS n FROM requests") == [{"n": 1}]


def test_a_mention_is_a_relation_and_never_links(world):
    """ "Blocked by acme/api#1", "see REQ-1": the item stays its own request, the relation
    is stored with its kind, and nothing is written to either item."""
    engine, ledger, gh, jr = world
    gh.create("acme/api#1", "Bug", ["alice-gh"])
    engine.sync_once()
    jr.create(
        "OPS-1",
        "Deploy blocked",
        ["acc-bob"],
        mentions=("github:acme/api#1", "req:1"),
        relation_kinds=(("github:acme/api#1", "blocked_by"),),
    )
    engine.sync_once()
    gh.create("acme/api#2", "Later issue", [])
    jr.create("OPS-2", "Mentions a future issue", [], mentions=("github:acme/api#3",))
    engine.sync_once()
    gh.create("acme/api#3", "The future issue", ["alice-gh"])
    engine.sync_once()
    assert q(ledger, "SELECT count(*) AS n FROM requests") == [{"n": 5}]
    assert jr.writes == 0
    assert gh.writes == 0
    assert q(
        ledger,
        "SELECT key, relation FROM link_keys k JOIN links l ON l.id = k.link_id "
        "WHERE l.ref = 'OPS-1' AND role = 'mention' ORDER BY key",
    ) == [
        {"key": "github:acme/api#1", "relation": "blocked_by"},
        {"key": "req:1", "relation": "mention"},
    ]


def test_any_mention_keeps_the_old_rule(any_mention_world):
    engine, ledger, gh, jr = any_mention_world
    gh.create("acme/api#1", "Bug", ["alice-gh"])
    engine.sync_once()
    jr.create("OPS-1", "See acme/api#1", [], mentions=("github:acme/api#1",))
    # an outsider's mention never links, not even under any-mention
    jr.create(
        "OPS-2", "Any news on acme/api#1?", [], mentions=("github:acme/api#1",), trusted=False
    )
    engine.sync_once()
    rows = q(ledger, "SELECT ref, request_id, via FROM links ORDER BY id")
    assert rows == [
        {"ref": "acme/api#1", "request_id": 1, "via": "created"},
        {"ref": "OPS-1", "request_id": 1, "via": "mention"},
        {"ref": "OPS-2", "request_id": 2, "via": "created"},
    ]


def test_owner_change_in_one_source_propagates(world):
    engine, ledger, gh, jr = world
    gh.create("acme/api#1", "Bug", ["alice-gh"])
    jr.create("OPS-1", "Bug", ["acc-alice"], declared=("github:acme/api#1",))
    engine.sync_once()
    gh.set_owners("acme/api#1", ["bob-gh"])
    engine.sync_once()
    assert jr.items["OPS-1"].owners == ["acc-bob"]
    hist = q(
        ledger,
        "SELECT from_value, to_value, source FROM events WHERE kind='owner_changed' ORDER BY id",
    )
    assert hist[-1] == {"from_value": "alice", "to_value": "bob", "source": "gh"}


def test_concurrent_conflict_later_wins_and_loser_recorded(world):
    engine, ledger, gh, jr = world
    gh.create("acme/api#1", "Bug", ["alice-gh"])
    jr.create("OPS-1", "Bug", ["acc-alice"], declared=("github:acme/api#1",))
    engine.sync_once()
    jr.set_owners("OPS-1", ["acc-bob"])  # earlier
    gh.set_owners("acme/api#1", ["carol-gh"])  # later
    engine.sync_once()
    engine.sync_once()
    assert q(ledger, "SELECT owner FROM requests") == [{"owner": "carol"}]
    assert gh.items["acme/api#1"].owners == ["carol-gh"]
    (conflict,) = q(ledger, "SELECT from_value, to_value FROM events WHERE kind = 'conflict'")
    assert conflict == {"from_value": "bob", "to_value": "carol"}
    # carol has no jira handle: the write to jr is skipped, visibly, not dropped
    (skipped,) = q(ledger, "SELECT status, last_error FROM outbox WHERE status = 'skipped'")
    assert "carol has no jira handle" in skipped["last_error"]


def test_own_write_is_not_read_back_as_a_change(world):
    engine, ledger, gh, jr = world
    gh.create("acme/api#1", "Bug", ["alice-gh"])
    jr.create("OPS-1", "Bug", [], declared=("github:acme/api#1",))
    engine.sync_once()
    assert jr.writes == 1
    before = q(ledger, "SELECT count(*) AS n FROM events")
    engine.sync_once()  # sees its own write to OPS-1 (its update time moved)
    engine.sync_once()
    assert q(ledger, "SELECT count(*) AS n FROM events") == before
    assert jr.writes == 1
    assert q(ledger, "SELECT count(*) AS n FROM outbox WHERE status = 'pending'") == [{"n": 0}]


def test_unchanged_repoll_changes_nothing(world):
    engine, ledger, gh, _ = world
    gh.create("acme/api#1", "Bug", ["alice-gh"])
    engine.sync_once()
    snapshot = ledger.counts()
    for item in gh.items.values():
        gh.touch(item)  # re-read the same content
    engine.sync_once()
    assert ledger.counts() == snapshot


def test_failed_poll_unassigns_nothing(world):
    engine, ledger, gh, _jr = world
    gh.create("acme/api#1", "Bug", ["alice-gh"])
    gh.create("acme/api#2", "Other", ["bob-gh"])
    engine.sync_once()
    gh.fail_pull = "all"
    (result,) = engine.sync_once(["gh"])
    assert not result.ok
    assert "outage" in (result.error or "")
    assert {r["owner"] for r in q(ledger, "SELECT owner FROM requests")} == {"alice", "bob"}
    status = q(ledger, "SELECT last_error FROM source_status WHERE source = 'gh'")
    assert "emulated outage" in status[0]["last_error"]


def test_poll_failing_midway_keeps_applied_pages_and_resumes(world):
    engine, ledger, gh, _ = world
    for n in range(5):
        gh.create(f"acme/api#{n}", f"Item {n}", [])
    gh.fail_pull = "after_first"
    engine.sync_once()
    assert q(ledger, "SELECT count(*) AS n FROM requests") == [{"n": 2}]  # page 1 only
    gh.fail_pull = "none"
    engine.sync_once()
    assert q(ledger, "SELECT count(*) AS n FROM requests") == [{"n": 5}]


def test_unmapped_handle_is_kept(world):
    engine, ledger, gh, jr = world
    gh.create("acme/api#1", "Bug", ["zed-gh"])
    gh.create("acme/api#2", "Bug 2", ["zed-gh"])
    jr.create("OPS-1", "Bug", [], declared=("github:acme/api#2",))
    engine.sync_once()
    assert q(ledger, "SELECT owner FROM requests ORDER BY id") == [
        {"owner": "github:zed-gh"},
        {"owner": "github:zed-gh"},
    ]
    assert q(ledger, "SELECT kind, handle, person_id FROM identities WHERE handle = 'zed-gh'") == [
        {"kind": "github", "handle": "zed-gh", "person_id": None}
    ]
    # it cannot be written to the other tool, and says why
    (row,) = q(ledger, "SELECT status, last_error FROM outbox")
    assert row["status"] == "skipped"
    assert "github:zed-gh has no jira handle" in row["last_error"]


def test_co_assignee_is_not_a_handoff(world):
    engine, ledger, gh, _ = world
    gh.create("acme/api#1", "Bug", ["alice-gh"])
    engine.sync_once()
    gh.set_owners("acme/api#1", ["bob-gh", "alice-gh"])  # bob added in front
    engine.sync_once()
    assert q(ledger, "SELECT owner FROM requests") == [{"owner": "alice"}]
    gh.set_owners("acme/api#1", ["bob-gh"])  # alice removed: now it is bob's
    engine.sync_once()
    assert q(ledger, "SELECT owner FROM requests") == [{"owner": "bob"}]


def test_operator_assign_reaches_every_link(world):
    engine, ledger, gh, jr = world
    gh.create("acme/api#1", "Bug", ["alice-gh"])
    jr.create("OPS-1", "Bug", ["acc-alice"], declared=("github:acme/api#1",))
    engine.sync_once()
    ledger.assign("REQ-1", "bob", actor="ops", note="covering while Alice is out")
    engine.sync_once()
    assert gh.items["acme/api#1"].owners == ["bob-gh"]
    assert jr.items["OPS-1"].owners == ["acc-bob"]
    (ev,) = q(
        ledger, "SELECT note, source FROM events WHERE kind='owner_changed' AND source='operator'"
    )
    assert ev == {"note": "covering while Alice is out", "source": "operator"}


def test_write_failing_repeatedly_is_dead_lettered(world, tmp_path):
    engine, ledger, gh, jr = world
    gh.create("acme/api#1", "Bug", ["alice-gh"])
    jr.create("OPS-1", "Bug", [], declared=("github:acme/api#1",))
    jr.fail_writes = 100
    engine.sync_once()
    for _ in range(10):  # retries are scheduled later; make them due now
        ledger.conn.execute("UPDATE outbox SET next_attempt_at = NULL")
        engine.drain("jr")
    (row,) = q(ledger, "SELECT status, attempts, last_error FROM outbox")
    assert row["status"] == "dead"
    assert "gave up after 8 attempts" in row["last_error"]


def test_under_any_mention_an_item_naming_two_requests_merges_them(any_mention_world):
    engine, ledger, gh, jr = any_mention_world
    gh.create("acme/api#1", "Bug", ["alice-gh"])
    engine.sync_once()
    jr.create("OPS-2", "Customer escalation", ["acc-bob"])  # a separate request, for now
    engine.sync_once()
    assert ledger.counts()["requests"] == 2
    # a later item names both: they were one piece of work all along
    jr.create("OPS-3", "Tracking", [], mentions=("github:acme/api#1", "jira:OPS-2"))
    engine.sync_once()
    engine.sync_once()
    assert q(ledger, "SELECT key, owner FROM requests") == [{"key": "REQ-1", "owner": "bob"}]
    assert len(q(ledger, "SELECT * FROM links WHERE request_id = 1")) == 3
    (merged,) = q(ledger, "SELECT from_value, to_value FROM events WHERE kind = 'merged'")
    assert merged == {"from_value": "REQ-2", "to_value": "REQ-1"}
    # bob's assignment was the later one: it wins, alice's loses visibly, and every tool agrees
    (conflict,) = q(ledger, "SELECT from_value, to_value FROM events WHERE kind = 'conflict'")
    assert conflict == {"from_value": "alice", "to_value": "bob"}
    assert gh.items["acme/api#1"].owners == ["bob-gh"]
    assert jr.items["OPS-3"].owners == ["acc-bob"]


@pytest.mark.parametrize("link_on", ["declared", "any-mention"])
def test_an_outsider_cannot_pre_claim_items_that_do_not_exist_yet(tmp_path, link_on):
    """An outsider's item naming acme/api#2..#9 and REQ-1 claims none of them: when a team
    member opens acme/api#3 later, it is a request of its own, under either rule."""
    for engine, ledger, gh, jr in make_world(tmp_path, link_on):
        gh.create("acme/api#1", "Bug", ["alice-gh"])
        future = tuple(f"github:acme/api#{n}" for n in range(2, 10))
        jr.create("OPS-1", "quick question", [], mentions=(*future, "req:1"), trusted=False)
        engine.sync_once()
        gh.create("acme/api#3", "Login fails", ["bob-gh"])
        engine.sync_once()
        assert q(ledger, "SELECT ref, request_id FROM links ORDER BY id") == [
            {"ref": "acme/api#1", "request_id": 1},
            {"ref": "OPS-1", "request_id": 2},
            {"ref": "acme/api#3", "request_id": 3},
        ]
        assert q(ledger, "SELECT owner FROM requests WHERE id = 3") == [{"owner": "bob"}]
        assert gh.writes == 0
        assert jr.writes == 0


def test_a_declaration_added_later_links_then_and_removing_it_unlinks_nothing(world):
    engine, ledger, gh, jr = world
    gh.create("acme/api#1", "Bug", ["alice-gh"])
    jr.create("OPS-1", "Incident", [])
    engine.sync_once()
    assert ledger.counts()["requests"] == 2
    jr.edit("OPS-1", declared=("github:acme/api#1",))  # "[acme/api#1] Incident"
    engine.sync_once()
    engine.sync_once()
    assert q(ledger, "SELECT ref, request_id FROM links ORDER BY id") == [
        {"ref": "acme/api#1", "request_id": 1},
        {"ref": "OPS-1", "request_id": 1},
    ]
    (merged,) = q(ledger, "SELECT from_value, to_value, source FROM events WHERE kind = 'merged'")
    assert merged == {"from_value": "REQ-2", "to_value": "REQ-1", "source": "jr"}
    assert jr.items["OPS-1"].owners == ["acc-alice"]  # it took the request's owner
    assert q(ledger, "SELECT via FROM links WHERE ref = 'OPS-1'") == [{"via": "declared"}]
    jr.edit("OPS-1", declared=())
    engine.sync_once()
    assert q(ledger, "SELECT count(*) AS n FROM requests") == [{"n": 1}]
    # the merge is undone by the operator, and stays undone
    ledger.split("REQ-2", actor="ops", note="not the same")
    engine.sync_once()
    assert q(ledger, "SELECT ref, request_id FROM links ORDER BY id") == [
        {"ref": "acme/api#1", "request_id": 1},
        {"ref": "OPS-1", "request_id": 2},
    ]


def test_a_later_declaration_across_two_groups_merges_nothing(world):
    engine, ledger, gh, jr = world
    gh.create("acme/api#1", "Bug", ["alice-gh"])
    gh.create("acme/api#5", "Other bug", ["bob-gh"])
    jr.create("OPS-1", "Incident", [], declared=("github:acme/api#1",))
    engine.sync_once()
    engine.sync_once()
    writes = (gh.writes, jr.writes)
    jr.edit("OPS-1", declared=("github:acme/api#1", "github:acme/api#5"))
    engine.sync_once()
    engine.sync_once()
    assert q(ledger, "SELECT ref, request_id FROM links ORDER BY id") == [
        {"ref": "acme/api#1", "request_id": 1},
        {"ref": "acme/api#5", "request_id": 2},
        {"ref": "OPS-1", "request_id": 1},
    ]
    assert (gh.writes, jr.writes) == writes
    evidence = q(
        ledger,
        "SELECT request_id, detail FROM events WHERE kind = 'conflict' AND field = 'link' "
        "ORDER BY request_id",
    )
    assert [e["request_id"] for e in evidence] == [1, 2]
    assert "jr:OPS-1 declares gh:acme/api#5 (REQ-2)" in evidence[0]["detail"]
    # read again unchanged: the evidence is not repeated
    jr.touch(jr.items["OPS-1"])
    engine.sync_once()
    assert len(q(ledger, "SELECT 1 FROM events WHERE kind = 'conflict' AND field = 'link'")) == 2
