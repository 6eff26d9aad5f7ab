"""Routing's decisions (syncd.routing) as properties, and the routing step (syncd.dispatch) on
a real ledger file: who gets unowned work, and what routing never does."""

from __future__ import annotations

import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd import dispatch
from syncd import routing_ledger as store
from syncd.config import Config, RoutingRule, Team
from syncd.ledger import Ledger
from syncd.models import Observation
from syncd.people import Directory
from syncd.routing import (
    Absence,
    Candidate,
    least_loaded,
    matches,
    next_in_turn,
    plan_cover,
    plan_routing,
    recipient,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PEOPLE = ["ann", "ben", "cat", "dan", "eve", "fay"]

people_st = st.lists(st.sampled_from(PEOPLE), min_size=1, max_size=6, unique=True)


def rule(name: str, **assign: Any) -> RoutingRule:
    when = assign.pop("when", {})
    return RoutingRule.model_validate({"name": name, "when": when, "assign": assign})


def cand(i: int, **kw: Any) -> Candidate:
    defaults: dict[str, Any] = {
        "title": f"request {i}",
        "state": "open",
        "unowned_since": NOW - timedelta(minutes=i),
    }
    return Candidate(i, f"REQ-{i}", **{**defaults, **kw})


@st.composite
def absences_st(draw: st.DrawFn) -> dict[str, Absence]:
    out = {}
    for p in draw(st.lists(st.sampled_from(PEOPLE), unique=True)):
        start = NOW - timedelta(hours=draw(st.integers(-5, 5)))
        delegate = draw(st.none() | st.sampled_from(PEOPLE))
        out[p] = Absence(p, start, start + timedelta(hours=draw(st.integers(1, 10))), delegate)
    return out


# -- properties ------------------------------------------------------------------------------


@given(
    members=people_st,
    direct=st.sampled_from(PEOPLE),
    absences=absences_st(),
    n=st.integers(0, 30),
    strategy=st.sampled_from(["round_robin", "least_loaded"]),
    load=st.dictionaries(st.sampled_from(PEOPLE), st.integers(0, 5)),
)
def test_routing_never_assigns_an_away_person(
    members: list[str],
    direct: str,
    absences: dict[str, Absence],
    n: int,
    strategy: str,
    load: dict[str, int],
) -> None:
    rules = [
        rule("vip", person=direct, when={"labels": ["vip"]}),
        rule("team", team="t", strategy=strategy),
    ]
    cands = [cand(i, labels=frozenset({"vip"} if i % 3 == 0 else ())) for i in range(n)]
    plan = plan_routing(
        cands, rules, [Team(id="t", members=members)], PEOPLE, absences, load, {}, NOW, 100
    )
    away = {p for p, a in absences.items() if a.active(NOW)}
    assert not {a.owner for a in plan.assignments} & away
    for a in plan.assignments:
        # A delegate receives it only in place of the away person it was meant for.
        assert (a.meant_for is None) or (a.meant_for in away and a.meant_for == direct)


@given(k=st.integers(1, 6), n=st.integers(0, 60), start=st.integers(0, 5))
def test_round_robin_spreads_n_requests_over_a_team_of_k_within_one(
    k: int, n: int, start: int
) -> None:
    members = PEOPLE[:k]
    last = members[start % k]
    plan = plan_routing(
        [cand(i) for i in range(n)],
        [rule("team", team="t")],
        [Team(id="t", members=members)],
        PEOPLE,
        {},
        {},
        {"t": last},
        NOW,
        1000,
    )
    counts = Counter(a.owner for a in plan.assignments)
    spread = [counts.get(m, 0) for m in members]
    assert sum(spread) == n
    assert max(spread) - min(spread) <= 1


@given(
    members=people_st,
    load=st.dictionaries(st.sampled_from(PEOPLE), st.integers(0, 9)),
    absences=absences_st(),
)
def test_least_loaded_picks_a_person_with_the_minimum_open_count(
    members: list[str], load: dict[str, int], absences: dict[str, Absence]
) -> None:
    available = {p for p in PEOPLE if p not in absences or not absences[p].active(NOW)}
    picked = least_loaded(members, load, available)
    pool = [m for m in members if m in available]
    if not pool:
        assert picked is None
    else:
        assert picked in pool
        assert load.get(picked, 0) == min(load.get(m, 0) for m in pool)


@given(n=st.integers(0, 50), budget=st.integers(1, 25), absences=absences_st())
def test_max_per_cycle_holds(n: int, budget: int, absences: dict[str, Absence]) -> None:
    owned = [store.Owned(100 + i, f"REQ-{100 + i}", PEOPLE[i % 6], NOW) for i in range(n)]
    moves = plan_cover(owned, absences, PEOPLE, NOW, budget)
    plan = plan_routing(
        [cand(i) for i in range(n)],
        [rule("team", team="t")],
        [Team(id="t", members=PEOPLE)],
        PEOPLE,
        absences,
        {},
        {},
        NOW,
        budget,
    )
    assert len(moves) <= budget
    assert len(plan.assignments) <= budget
    available = [p for p in PEOPLE if p not in absences or not absences[p].active(NOW)]
    if available:
        assert len(plan.assignments) + plan.left == n
        assert len(plan.assignments) == min(n, budget)


# -- examples --------------------------------------------------------------------------------


def test_a_team_with_nobody_available_routes_nothing_and_says_so() -> None:
    absences = {p: Absence(p, NOW - timedelta(hours=1), NOW + timedelta(days=1)) for p in PEOPLE}
    plan = plan_routing(
        [cand(1)],
        [rule("team", team="t")],
        [Team(id="t", members=["ann", "ben"])],
        PEOPLE,
        absences,
        {},
        {},
        NOW,
        20,
    )
    assert plan.assignments == []
    assert plan.notes == ["rule 'team': nobody in team 't' is available"]


def test_the_first_matching_rule_wins_and_every_test_must_hold() -> None:
    c = cand(
        1,
        title="Refund stuck for order 7",
        sources=frozenset({"api"}),
        tools=frozenset({"github"}),
        labels=frozenset({"billing"}),
        requesters=frozenset({"kim@example.com"}),
        unowned_since=NOW - timedelta(hours=2),
    )
    assert matches(rule("x", person="ann", when={"labels": "BILLING"}).when, c, NOW)
    assert matches(rule("x", person="ann", when={"title": "(?i)refund"}).when, c, NOW)
    assert matches(rule("x", person="ann", when={"requester": "@example.com"}).when, c, NOW)
    assert not matches(rule("x", person="ann", when={"requester": "@ample.com"}).when, c, NOW)
    assert matches(rule("x", person="ann", when={"unowned_for": "1h"}).when, c, NOW)
    assert not matches(rule("x", person="ann", when={"unowned_for": "3h"}).when, c, NOW)
    assert not matches(rule("x", person="ann", when={"tool": "jira"}).when, c, NOW)
    assert not matches(
        rule("x", person="ann", when={"labels": "billing", "state": "blocked"}).when, c, NOW
    )
    rules = [rule("jira", person="ann", when={"tool": "jira"}), rule("any", person="ben")]
    plan = plan_routing([c], rules, [], PEOPLE, {}, {}, {}, NOW, 20)
    assert [(a.owner, a.why) for a in plan.assignments] == [("ben", "any")]


def test_a_pathological_title_pattern_times_out_as_no_match() -> None:
    c = cand(1, title="a" * 40 + "!")
    assert not matches(rule("x", person="ann", when={"title": "^(a+)+$"}).when, c, NOW)


def test_work_meant_for_an_away_person_goes_to_the_delegate() -> None:
    absences = {"ann": Absence("ann", NOW - timedelta(hours=1), NOW + timedelta(days=1), "ben")}
    assert recipient("ann", absences, NOW, PEOPLE) == "ben"
    assert recipient("ann", absences, NOW + timedelta(days=2), PEOPLE) == "ann"
    plan = plan_routing([cand(1)], [rule("r", person="ann")], [], PEOPLE, absences, {}, {}, NOW, 20)
    assert [(a.owner, a.meant_for) for a in plan.assignments] == [("ben", "ann")]


def test_round_robin_skips_the_away_and_wraps() -> None:
    assert next_in_turn(["ann", "ben", "cat"], "ben", {"ann", "ben"}) == "ann"
    assert next_in_turn(["ann", "ben", "cat"], "gone", {"cat"}) == "cat"
    assert next_in_turn(["ann"], "ann", set()) is None


# -- the step on a real ledger ---------------------------------------------------------------


def config(**extra: Any) -> Config:
    doc: dict[str, Any] = {
        "people": [{"id": p, "handles": {"github": f"{p}-gh"}} for p in PEOPLE],
        "teams": [{"id": "t", "members": PEOPLE[:3]}],
        "routing": [{"name": "all", "assign": {"team": "t"}}],
        **extra,
    }
    return Config.model_validate(doc)


def observe(ledger: Ledger, cfg: Config, number: int, owner: str | None, at: datetime) -> None:
    from syncd.models import Page

    obs = Observation(
        source="api",
        ref=f"acme/api#{number}",
        url=f"https://github.com/acme/api/issues/{number}",
        title=f"Issue {number}",
        state="open",
        owners=(f"{owner}-gh",) if owner else (),
        updated_at=at,
        keys=(f"github:acme/api#{number}",),
    )
    ledger.apply_page("api", "github", Page([obs]), Directory.build(cfg.people), now=at)


def owners(ledger: Ledger) -> dict[int, str | None]:
    return {r["id"]: r["owner"] for r in ledger.rows("SELECT id, owner FROM requests")}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(owned=st.lists(st.none() | st.sampled_from(PEOPLE), min_size=1, max_size=12))
def test_the_step_never_touches_an_owned_request(owned: list[str | None]) -> None:
    cfg = config()
    with tempfile.TemporaryDirectory() as tmp, Ledger(Path(tmp) / "l.db") as ledger:
        ledger.sync_people(cfg.people)
        for i, owner in enumerate(owned, start=1):
            observe(ledger, cfg, i, owner, NOW - timedelta(hours=1))
        before = owners(ledger)
        report = dispatch.step(ledger, cfg, Directory.build(cfg.people), NOW)
        after = owners(ledger)
        for rid, owner in before.items():
            if owner is not None:
                assert after[rid] == owner
            else:
                assert after[rid] in PEOPLE[:3]
        assert len(report.routed) == sum(o is None for o in before.values())
        events = ledger.rows("SELECT source, note FROM events WHERE kind = 'owner_changed' "
                             "AND source = 'routing'")  # fmt: skip
        assert events == [{"source": "routing", "note": "all"}] * len(report.routed)
        # Each routing is written back like any handoff: the item is owed the new owner.
        owed = ledger.rows(
            "SELECT request_id, value FROM outbox WHERE status = 'pending' AND field = 'owner'"
        )
        assert sorted((o["request_id"], o["value"]) for o in owed) == sorted(
            (a.request_id, a.owner) for a in report.routed
        )
        # Routed once; not again while it stays owned.
        again = dispatch.step(ledger, cfg, Directory.build(cfg.people), NOW + timedelta(minutes=1))
        assert again.routed == []


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.integers(1, 4), min_size=2, max_size=5))
def test_a_restart_does_not_reset_the_rotation(batches: list[int]) -> None:
    """Requests arriving in batches are routed the same whether the ledger stays open or is
    closed and reopened (a daemon restart) between batches."""
    cfg = config()

    def run(restart: bool) -> list[str]:
        got: list[str] = []
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "l.db"
            ledger = Ledger(path)
            ledger.sync_people(cfg.people)
            number = 0
            for b, size in enumerate(batches):
                at = NOW + timedelta(minutes=b)
                for _ in range(size):
                    number += 1
                    observe(ledger, cfg, number, None, at)
                report = dispatch.step(ledger, cfg, Directory.build(cfg.people), at)
                got += [a.owner for a in report.routed]
                if restart:
                    ledger.close()
                    ledger = Ledger(path)
            ledger.close()
        return got

    assert run(restart=True) == run(restart=False)
    spread = Counter(run(restart=True))
    assert max(spread.values()) - min(spread.get(p, 0) for p in PEOPLE[:3]) <= 1


def test_dry_run_preview_changes_nothing(tmp_path: Path) -> None:
    cfg = config()
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.sync_people(cfg.people)
        for i in range(1, 4):
            observe(ledger, cfg, i, None, NOW - timedelta(hours=1))
        before = ledger.rows("SELECT * FROM events"), ledger.rows("SELECT * FROM outbox")
        seen = dispatch.preview(ledger, cfg, NOW)
        assert [a.owner for a in seen.routed] == ["ann", "ben", "cat"]
        assert (ledger.rows("SELECT * FROM events"), ledger.rows("SELECT * FROM outbox")) == before
        assert store.rotation(ledger.conn) == {}
        report = dispatch.step(ledger, cfg, Directory.build(cfg.people), NOW)
        assert [a.owner for a in report.routed] == ["ann", "ben", "cat"]


def test_covering_moves_new_handoffs_and_only_with_move_open_the_old_work(
    tmp_path: Path,
) -> None:
    cfg = config(routing=[])
    d = Directory.build(cfg.people)
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.sync_people(cfg.people)
        observe(ledger, cfg, 1, "ann", NOW - timedelta(hours=2))  # Ann's since before
        observe(ledger, cfg, 2, "cat", NOW - timedelta(hours=2))
        # Ann's old request is confirmed by its tool after her absence began: not a handoff.
        observe(ledger, cfg, 1, "ann", NOW - timedelta(minutes=30))
        away = Absence("ann", NOW - timedelta(hours=1), NOW + timedelta(days=1), "ben")
        store.set_absence(ledger, away, "ops", NOW - timedelta(hours=1))
        assert dispatch.step(ledger, cfg, d, NOW).covered == []
        ledger.assign("REQ-2", "ann", actor="ops", note=None, now=NOW + timedelta(minutes=1))
        report = dispatch.step(ledger, cfg, d, NOW + timedelta(minutes=2))
        assert [(a.key, a.owner, a.meant_for) for a in report.covered] == [("REQ-2", "ben", "ann")]
        assert owners(ledger) == {1: "ann", 2: "ben"}
        delegated = ledger.rows("SELECT request_id, from_value, to_value FROM events "
                                "WHERE kind = 'delegated'")  # fmt: skip
        assert delegated == [{"request_id": 2, "from_value": "ann", "to_value": "ben"}]
        moving = Absence("ann", NOW, NOW + timedelta(days=1), "ben", move_open=True)
        store.set_absence(ledger, moving, "ops", NOW + timedelta(minutes=3))
        report = dispatch.step(ledger, cfg, d, NOW + timedelta(minutes=4))
        assert [(a.key, a.owner) for a in report.covered] == [("REQ-1", "ben")]
        # Back: nothing more moves, and what moved stays.
        assert store.clear_absence(ledger, "ann", "ops", NOW + timedelta(minutes=5))
        ledger.assign("REQ-1", "ann", actor="ops", note=None, now=NOW + timedelta(minutes=6))
        assert dispatch.step(ledger, cfg, d, NOW + timedelta(minutes=7)).covered == []
        assert owners(ledger) == {1: "ann", 2: "ben"}


def test_someone_who_gave_a_request_up_is_not_handed_it_again(tmp_path: Path) -> None:
    cfg = config(
        teams=[{"id": "t", "members": ["ann", "ben"]}],
        routing=[{"name": "all", "assign": {"team": "t", "strategy": "least_loaded"}}],
    )
    d = Directory.build(cfg.people)
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.sync_people(cfg.people)
        observe(ledger, cfg, 1, None, NOW - timedelta(hours=1))
        assert [a.owner for a in dispatch.step(ledger, cfg, d, NOW).routed] == ["ann"]
        observe(ledger, cfg, 1, "ann", NOW + timedelta(minutes=1))  # the tool shows her
        # Ann takes herself off it in the tool: it is unowned again, and goes to Ben,
        # although both now have none open and a tie goes to Ann.
        observe(ledger, cfg, 1, None, NOW + timedelta(minutes=5))
        assert owners(ledger) == {1: None}
        report = dispatch.step(ledger, cfg, d, NOW + timedelta(minutes=6))
        assert [a.owner for a in report.routed] == ["ben"]
    plan = plan_routing(
        [cand(1, gave_up="ann")], [rule("r", person="ann")], [], PEOPLE, {}, {}, {}, NOW, 20
    )
    assert plan.assignments == []
