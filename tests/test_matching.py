"""The identity rules (syncd.matching): decisions case by case, re-matching a ledger, and a
property on a real ledger: mentions never merge, one declaration links exactly its pair."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.config import Person
from syncd.ledger import Ledger
from syncd.matching import Candidate, Item, Place, decide, linking_keys, rematch
from syncd.models import Observation, Page
from syncd.people import Directory


def cand(rid: int, key: str = "jira:OPS-7", direction: str = "declares", **kw: object) -> Candidate:
    return Candidate(rid, key, direction, f"x:{key}", **kw)  # type: ignore[arg-type]


NEW = None
ALONE = Place(5, alone=True)
SHARED = Place(5, alone=False)
HELD = Place(5, alone=True, held=True)


@pytest.mark.parametrize(
    ("place", "candidates", "link_on", "action", "target", "merge"),
    [
        # a new item: nothing declared, one request, two requests
        (NEW, [], "declared", "new", None, ()),
        (NEW, [cand(1)], "declared", "join", 1, ()),
        (NEW, [cand(1), cand(1, "github:acme/api#1")], "declared", "join", 1, ()),
        (NEW, [cand(1), cand(2, "jira:OPS-9")], "declared", "ambiguous", None, ()),
        (NEW, [cand(2), cand(1, "jira:OPS-9")], "any-mention", "merge", 1, (2,)),
        # a linked item whose text now declares more
        (ALONE, [], "declared", "keep", 5, ()),
        (ALONE, [cand(5)], "declared", "keep", 5, ()),  # names its own request
        (ALONE, [cand(1)], "declared", "merge", 1, (5,)),  # alone: its request folds in
        (SHARED, [cand(1)], "declared", "ambiguous", 5, ()),  # two groups: not merged
        (ALONE, [cand(1), cand(2, "jira:OPS-9")], "declared", "ambiguous", 5, ()),
        (HELD, [cand(1)], "declared", "ambiguous", 5, ()),  # an operator put it there
        (HELD, [cand(1)], "any-mention", "ambiguous", 5, ()),
        (SHARED, [cand(1)], "any-mention", "merge", 1, (5,)),
        (SHARED, [cand(7)], "any-mention", "merge", 5, (7,)),  # the older request stays
    ],
)
def test_decide(place, candidates, link_on, action, target, merge) -> None:
    d = decide(place, candidates, link_on=link_on)
    assert (d.action, d.request_id, d.merge) == (action, target, merge)
    if action == "ambiguous":
        assert d.reason
        assert {c.request_id for c in d.evidence} - {5} == {c.request_id for c in candidates} - {5}


def test_an_unlink_keeps_apart_either_way() -> None:
    own = ("github:acme/api#12",)
    # this item was unlinked from OPS-7: its declaration of OPS-7 does not link
    assert (
        decide(NEW, [cand(1)], link_on="declared", own_keys=own, ignored={"jira:OPS-7"}).action
        == "new"
    )
    # the request it left, by number
    assert (
        decide(NEW, [cand(1, "req:1", "request")], link_on="declared", ignored={"req:1"}).action
        == "new"
    )
    # the other side was unlinked from this one: OPS-7 declaring it does not link it either
    back = cand(
        1, own[0], "declared_by", other_keys=frozenset({"jira:OPS-7"}), other_ignored=frozenset(own)
    )
    assert decide(NEW, [back], link_on="declared", own_keys=own).action == "new"
    # a different item links
    assert (
        decide(NEW, [cand(2, "jira:OPS-9")], link_on="declared", ignored={"jira:OPS-7"}).action
        == "join"
    )


def obs(**kw: object) -> Observation:
    base: dict[str, object] = {
        "source": "s",
        "ref": "r",
        "url": "",
        "title": "",
        "state": "open",
        "owners": (),
        "updated_at": datetime(2026, 1, 1, tzinfo=UTC),
        "keys": ("jira:OPS-1",),
    }
    return Observation(**{**base, **kw})  # type: ignore[arg-type]


def test_linking_keys() -> None:
    o = obs(declared=("jira:OPS-7",), mentions=("jira:OPS-9",))
    assert linking_keys(o, "declared") == ("jira:OPS-7",)
    assert linking_keys(o, "any-mention") == ("jira:OPS-7", "jira:OPS-9")
    # an outsider's mentions never link, under either rule
    assert linking_keys(obs(mentions=("req:1",), author_trusted=False), "any-mention") == ()


def item(lid: int, rid: int, key: str, *linking: str, **kw: object) -> Item:
    return Item(lid, rid, f"s:{key}", frozenset({key}), linking, **kw)  # type: ignore[arg-type]


def test_rematch() -> None:
    items = [
        item(1, 1, "jira:OPS-7"),
        item(2, 1, "github:a/b#1", "jira:OPS-7"),  # declared: justified
        item(3, 1, "github:a/b#2", via="mention"),  # linked by the old rule: dropped
        item(4, 1, "github:a/b#3", "github:a/b#1"),  # declares one that is justified
        item(5, 2, "jira:OPS-9", "jira:OPS-7"),  # declares an item of another request
        item(6, 3, "jira:OPS-10"),
        item(7, 1, "github:a/b#4", held=True),  # an operator linked it
        item(8, 4, "github:a/b#5", "jira:OPS-7", ignored=frozenset({"jira:OPS-7"})),
    ]
    found = {(f.action, f.link_id, f.request_id) for f in rematch(items)}
    assert found == {("drop", 3, 1), ("link", 5, 1)}


# -- a property on a real ledger ------------------------------------------------------

PEOPLE = [Person(id="alice", handles={"jira": "acc-alice"})]
DIRECTORY = Directory.build(PEOPLE)
KEYS = [f"jira:OPS-{n}" for n in range(1, 7)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mentions=st.lists(st.lists(st.sampled_from(KEYS), max_size=4), min_size=6, max_size=6),
    pair=st.one_of(st.none(), st.tuples(st.integers(0, 5), st.integers(0, 5))),
)
def test_mentions_never_merge_and_one_declaration_links_its_pair(
    mentions: list[list[str]], pair: tuple[int, int] | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp, Ledger(Path(tmp) / "l.db") as ledger:
        ledger.sync_people(PEOPLE)
        t = datetime(2026, 1, 1, tzinfo=UTC)
        for n, named in enumerate(mentions):
            declared = (KEYS[pair[1]],) if pair and pair[0] == n and pair[0] != pair[1] else ()
            o = Observation(
                source="ops",
                ref=f"OPS-{n + 1}",
                url="",
                title="t",
                state="open",
                owners=("acc-alice",),
                updated_at=t + timedelta(seconds=n),
                keys=(KEYS[n],),
                mentions=tuple(named),
                declared=declared,
            )
            ledger.apply_page("ops", "jira", Page([o]), DIRECTORY, now=t)
        groups = ledger.rows("SELECT request_id, group_concat(ref) AS refs FROM links GROUP BY 1")
        joined = [g for g in groups if "," in g["refs"]]
        if pair is None or pair[0] == pair[1]:
            assert len(groups) == 6
            assert not joined
        else:
            assert len(groups) == 5
            (g,) = joined
            assert set(g["refs"].split(",")) == {f"OPS-{pair[0] + 1}", f"OPS-{pair[1] + 1}"}
        assert ledger.rows("SELECT count(*) AS n FROM outbox WHERE status = 'pending'") == [
            {"n": 0}
        ]
