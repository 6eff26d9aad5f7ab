"""Follow-through on a real ledger file: a handoff awaits acceptance until its new owner acts,
goes overdue when nobody does, and is escalated once (syncd.acceptance, syncd.dispatch)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd import dispatch
from syncd.acceptance import OwnerChange, Pending, Touch, accepted_by_touch, follow
from syncd.config import Config
from syncd.ledger import Ledger
from syncd.models import Activity, Observation, Page
from syncd.people import Directory

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PEOPLE = ["ann", "ben", "cat"]


def make_config(**extra: Any) -> Config:
    return Config.model_validate(
        {
            "people": [
                {"id": p, "handles": {"github": f"{p}-gh", "email": f"{p}@acme.test", "unix": p}}
                for p in PEOPLE
            ],
            **extra,
        }
    )


class World:
    def __init__(self, path: Path, config: Config) -> None:
        self.path, self.config = path, config
        self.ledger = Ledger(path)
        self.ledger.sync_people(config.people)
        self.d = Directory.build(config.people)

    def restart(self) -> None:
        self.ledger.close()
        self.ledger = Ledger(self.path)

    def see(self, owner: str | None, at: datetime, **kw: Any) -> None:
        obs = Observation(
            source="api",
            ref="acme/api#1",
            url="https://github.com/acme/api/issues/1",
            title="Printer down",
            state=kw.pop("state", "open"),
            owners=(f"{owner}-gh",) if owner else (),
            updated_at=at,
            keys=("github:acme/api#1",),
            **kw,
        )
        self.ledger.apply_page("api", "github", Page([obs]), self.d, now=at)

    def mail(self, actor: str, at: datetime, *, trusted: bool) -> None:
        obs = Observation(
            source="inbox",
            ref="<m1@acme.test>",
            url="",
            title="Printer down",
            state="open",
            owners=(),
            updated_at=at,
            declared=("github:acme/api#1",),
            mentions=("github:acme/api#1",),
            activity=(Activity(actor, at, "reply", trusted=trusted),),
        )
        self.ledger.apply_page("inbox", "email", Page([obs]), self.d, now=at)

    def step(self, at: datetime) -> dispatch.StepReport:
        return dispatch.step(self.ledger, self.config, self.d, at)

    def events(self, kind: str) -> list[dict[str, Any]]:
        return self.ledger.rows(
            "SELECT source, actor, from_value, to_value, detail, note FROM events "
            "WHERE kind = ? ORDER BY id",
            (kind,),
        )


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path / "ledger.db", make_config(acceptance={"accept_within": "1h"}))
    w.see("ann", T0)  # first seen: ann's from before syncd watched; nothing awaits
    w.step(T0)
    return w


def test_an_owner_first_seen_at_creation_awaits_nothing(world: World) -> None:
    assert world.ledger.rows("SELECT * FROM handoffs") == []
    assert world.step(T0 + timedelta(days=3)).overdue == []


def test_the_new_owners_comment_accepts_the_handoff(world: World) -> None:
    world.ledger.assign("REQ-1", "ben", actor="ops", note=None, now=T0 + timedelta(minutes=5))
    world.step(T0 + timedelta(minutes=6))
    assert [h["owner"] for h in world.ledger.rows("SELECT owner FROM handoffs")] == ["ben"]
    # Ann comments (not the new owner), and Ben commented before the handoff: neither counts.
    world.see(
        "ben",
        T0 + timedelta(minutes=10),
        activity=(
            Activity("ann-gh", T0 + timedelta(minutes=7), "comment"),
            Activity("ben-gh", T0 + timedelta(minutes=4), "comment"),
        ),
    )
    assert world.step(T0 + timedelta(minutes=11)).accepted == []
    world.see(
        "ben",
        T0 + timedelta(minutes=20),
        activity=(Activity("ben-gh", T0 + timedelta(minutes=19), "comment"),),
    )
    report = world.step(T0 + timedelta(minutes=21))
    assert [(a.by, a.how) for a in report.accepted] == [("ben", "comment in api")]
    assert world.events("accepted") == [
        {"source": "api", "actor": "ben", "from_value": None, "to_value": "ben",
         "detail": "comment in api", "note": None}
    ]  # fmt: skip
    # Accepted: it never goes overdue.
    assert world.step(T0 + timedelta(hours=5)).overdue == []


def test_a_forged_mail_reply_does_not_accept_but_an_authenticated_one_does(world: World) -> None:
    world.ledger.assign("REQ-1", "ben", actor="ops", note=None, now=T0 + timedelta(minutes=5))
    world.step(T0 + timedelta(minutes=6))
    world.mail("ben@acme.test", T0 + timedelta(minutes=8), trusted=False)
    assert world.step(T0 + timedelta(minutes=9)).accepted == []
    world.mail("ben@acme.test", T0 + timedelta(minutes=12), trusted=True)
    assert [a.how for a in world.step(T0 + timedelta(minutes=13)).accepted] == ["reply in inbox"]


def test_handing_it_on_accepts_it(world: World) -> None:
    world.ledger.assign("REQ-1", "ben", actor="ops", note=None, now=T0 + timedelta(minutes=5))
    world.step(T0 + timedelta(minutes=6))
    # Ben (unix login "ben") hands it to Cat with `syncd assign`.
    world.ledger.assign("REQ-1", "cat", actor="ben", note=None, now=T0 + timedelta(minutes=9))
    report = world.step(T0 + timedelta(minutes=10))
    assert [(a.by, a.how) for a in report.accepted] == [("ben", "handed on")]
    assert [h["owner"] for h in world.ledger.rows("SELECT owner FROM handoffs")] == ["cat"]


def test_overdue_then_escalated_exactly_once_across_a_restart(tmp_path: Path) -> None:
    config = make_config(acceptance={"accept_within": "1h"}, escalation={"action": "flag"})
    w = World(tmp_path / "ledger.db", config)
    w.see("ann", T0)
    w.step(T0)
    w.ledger.assign("REQ-1", "ben", actor="ops", note=None, now=T0 + timedelta(minutes=5))
    assert w.step(T0 + timedelta(minutes=30)).overdue == []
    report = w.step(T0 + timedelta(hours=2))
    assert report.overdue == ["REQ-1"]
    assert report.escalated == ["REQ-1"]
    w.restart()
    for h in range(3, 6):
        again = w.step(T0 + timedelta(hours=h))
        assert again.escalated == []
        assert again.overdue == []
    assert w.events("escalated") == [
        {"source": "routing", "actor": None, "from_value": "ann", "to_value": "ben",
         "detail": "flagged: not accepted in time", "note": None}
    ]  # fmt: skip


def test_team_override_and_reroute_to_someone_else(tmp_path: Path) -> None:
    config = make_config(
        teams=[{"id": "desk", "members": ["ben", "cat"], "accept_within": "10m"}],
        routing=[{"name": "desk", "assign": {"team": "desk"}}],
        acceptance={"accept_within": "1d"},
        escalation={"action": "reroute"},
    )
    w = World(tmp_path / "ledger.db", config)
    w.see(None, T0)
    assert [a.owner for a in w.step(T0 + timedelta(minutes=1)).routed] == ["ben"]
    report = w.step(T0 + timedelta(minutes=20))  # ten minutes is the desk's limit, not a day
    assert report.escalated == ["REQ-1"]
    assert w.ledger.rows("SELECT owner FROM requests") == [{"owner": "cat"}]
    moves = w.events("owner_changed")
    assert [(m["from_value"], m["to_value"], m["note"]) for m in moves] == [
        (None, "ben", "desk"),
        ("ben", "cat", "escalation: desk"),
    ]
    # Cat's handoff is a new one, awaiting Cat.
    w.step(T0 + timedelta(minutes=21))
    assert [h["owner"] for h in w.ledger.rows("SELECT owner FROM handoffs")] == ["cat"]


def test_follow_replaces_and_self_assignment_needs_no_acceptance() -> None:
    p = Pending(1, "REQ-1", "ben", "ann", T0)
    change = OwnerChange(9, 1, "REQ-1", "cat", "ben", T0 + timedelta(minutes=1), "ann", True)
    new, accepted = follow(p, change)
    assert accepted is None
    assert new is not None
    assert new.owner == "cat"
    took = OwnerChange(10, 1, "REQ-1", "cat", "ben", T0 + timedelta(minutes=2), "cat", True)
    assert follow(None, took) == (None, None)
    touches = [Touch(1, "ben", T0 - timedelta(seconds=1), "comment", "api")]
    assert accepted_by_touch(p, touches) is None
