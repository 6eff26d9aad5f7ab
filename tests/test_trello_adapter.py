"""The Trello adapter against a respx router standing in for api.trello.com: the action feed
and sweeps, request shapes and cost, identity, write-back, throttling, secrets and hostile
cards."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from pydantic import ValidationError

from syncd.adapters import adapter_class
from syncd.adapters.trello import (
    CARD_FIELDS,
    KEY_LIMIT,
    TOKEN_LIMIT,
    WINDOW,
    TrelloAdapter,
    TrelloConfig,
)
from syncd.adapters.trello_feed import ACTION_TYPES
from syncd.config import Person
from syncd.errors import FatalError, MalformedResponse, RetriableError, SourceError
from syncd.http import HttpOptions, TraceWriter
from syncd.models import Handoff, Observation, Page
from syncd.people import Directory
from syncd.throttle import SlidingWindow, shared_window

API = "https://api.trello.com/1"
KEY = "4f1e6b7c8d9e0a1b2c3d4e5f6a7b8c9d"
TOKEN = "ATTA0123456789abcdefUnitTestTrelloToken0123456789abcdef0123456789"
BOARD = "5f1e6b7c8d9e0a1b2c3d4e01"
OTHER_BOARD = "5f1e6b7c8d9e0a1b2c3d4e02"
TODO, DOING, DONE, ODD = (f"60a0000000000000000000{n:02x}" for n in (1, 2, 3, 4))
ALICE, BOB, CAROL = (f"70b00000000000000000{n:04x}" for n in (1, 2, 3))
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HANDOFF = Handoff("REQ-1", "Printer", "bob", "Bob", "alice", "Alice", "trello")


def cid(n: int) -> str:
    return f"65c0000000000000000{n:05x}"


def aid(n: int) -> str:
    return f"66d0000000000000000{n:05x}"


def card(
    n: int,
    *,
    list_id: str = TODO,
    members: tuple[str, ...] = (),
    closed: bool = False,
    name: str | None = None,
    desc: str = "",
    board: str = BOARD,
    at: str = "2024-05-01T11:50:00.000Z",
    attachments: int = 0,
) -> dict[str, Any]:
    short = f"Sh{n:06d}"
    return {
        "id": cid(n),
        "name": name if name is not None else f"Card {n}",
        "desc": desc,
        "idList": list_id,
        "idMembers": list(members),
        "closed": closed,
        "dateLastActivity": at,
        "shortLink": short,
        "url": f"https://trello.com/c/{short}/{n}-card-{n}",
        "idBoard": board,
        "badges": {"attachments": attachments, "comments": 0, "description": bool(desc)},
    }


def action(
    n: int,
    card_n: int,
    kind: str = "updateCard",
    at: str = "2024-05-01T11:50:00.000Z",
    member: tuple[str, str] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"card": {"id": cid(card_n), "name": f"Card {card_n}"}}
    body: dict[str, Any] = {"id": aid(n), "type": kind, "date": at, "data": data}
    if member is not None:
        data["idMember"] = member[0]
        body["member"] = {"id": member[0], "username": member[1], "fullName": member[1]}
    return body


LISTS = [
    {"id": TODO, "name": "To Do", "closed": False},
    {"id": DOING, "name": "Doing", "closed": False},
    {"id": DONE, "name": "Done", "closed": False},
    {"id": ODD, "name": "Waiting on customer", "closed": True},
]
MEMBERS = [
    {"id": ALICE, "username": "alicemoreau", "fullName": "Alice Moreau"},
    {"id": BOB, "username": "bobokafor", "fullName": "Bob Okafor"},
    {"id": CAROL, "username": "carol", "fullName": "Carol"},
]


class FakeTime:
    """A monotonic clock that sleeping advances, for the throttle."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def router() -> respx.Router:
    r = respx.Router(base_url=API, assert_all_called=False)
    r.get(f"/boards/{BOARD}/lists").mock(return_value=httpx.Response(200, json=LISTS))
    r.get(f"/boards/{BOARD}/members").mock(return_value=httpx.Response(200, json=MEMBERS))
    # Cards' attachments: none unless a test says otherwise (by name: respx answers with the
    # first route that matches).
    r.get(url__regex=r"/cards/[0-9a-f]{24}/attachments", name="attachments").mock(
        return_value=httpx.Response(200, json=[])
    )
    return r


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def make_config(monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> TrelloConfig:
    monkeypatch.setenv("SYNCD_TEST_TRELLO_KEY", KEY)
    monkeypatch.setenv("SYNCD_TEST_TRELLO_TOKEN", TOKEN)
    doc: dict[str, Any] = {
        "name": "biz",
        "type": "trello",
        "boards": [BOARD],
        "key": {"env": "SYNCD_TEST_TRELLO_KEY"},
        "token": {"env": "SYNCD_TEST_TRELLO_TOKEN"},
        **overrides,
    }
    config = TrelloConfig.model_validate(doc)
    config.resolve_secrets()
    return config


@pytest.fixture
def make(
    monkeypatch: pytest.MonkeyPatch, router: respx.Router, sleeps: list[float], fake_time: FakeTime
) -> Iterator[Any]:
    made: list[TrelloAdapter] = []

    def build(
        trace: TraceWriter | None = None,
        windows: tuple[SlidingWindow, ...] | None = None,
        people: list[Person] | None = None,
        **overrides: Any,
    ) -> TrelloAdapter:
        options = HttpOptions(
            sleep=sleeps.append, transport=httpx.MockTransport(router.handler), trace=trace
        )
        if windows is None:
            windows = (
                SlidingWindow(TOKEN_LIMIT, WINDOW, clock=fake_time.clock, sleep=fake_time.sleep),
            )
        adapter = TrelloAdapter(make_config(monkeypatch, **overrides), options, windows=windows)
        adapter.clock = lambda: NOW
        adapter.bind_people(Directory.build(people or []))
        made.append(adapter)
        return adapter

    yield build
    for adapter in made:
        adapter.close()


def feed(router: respx.Router, *answers: list[Any], board: str = BOARD) -> respx.Route:
    return router.get(f"/boards/{board}/actions").mock(
        side_effect=[httpx.Response(200, json=a) for a in answers]
    )


def open_cards(router: respx.Router, *cards: dict[str, Any]) -> respx.Route:
    return router.get(f"/boards/{BOARD}/cards/open").mock(
        return_value=httpx.Response(200, json=list(cards))
    )


def one_card(router: respx.Router, raw: dict[str, Any]) -> respx.Route:
    return router.get(f"/cards/{raw['id']}").mock(return_value=httpx.Response(200, json=raw))


def pull(adapter: TrelloAdapter, cursor: dict[str, Any] | None = None) -> list[Page]:
    return list(adapter.pull(cursor))


def observations(pages: list[Page]) -> list[Observation]:
    return [o for p in pages for o in p.observations]


def query(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}


SWEPT = "2024-05-01T11:30:00Z"


def settled(since: str | None = None) -> dict[str, Any]:
    """A cursor for a board swept half an hour ago."""
    entry = {"swept": SWEPT} | ({"since": since} if since else {})
    return {"boards": {BOARD: entry}}


# -- registry and config -------------------------------------------------------------------


def test_registered_under_trello() -> None:
    assert adapter_class("trello") is TrelloAdapter


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"boards": []}, "at least 1"),
        ({"boards": ["AbCd1234"]}, "not a board id: .AbCd1234."),
        ({"boards": [BOARD, BOARD.upper()]}, "lists a board twice"),
        ({"base_url": "http://trello.example.com/1"}, "use https"),
        ({"base_url": "https://api.trello.com/1?key=x"}, "plain API root"),
        ({"archived": "deleted"}, "archived"),
        ({"token": "inline"}, "not read inline"),
        ({"key": None}, "key"),
    ],
)
def test_config_rejects(
    monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        make_config(monkeypatch, **overrides)


def test_config_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(monkeypatch, boards=[BOARD.upper()])
    assert config.boards == [BOARD]
    assert config.base_url == API
    assert config.sweep_every == timedelta(hours=1)
    assert config.archived == "done"


# -- the first pull: a sweep ---------------------------------------------------------------


def test_first_pull_sweeps_the_board(make: Any, router: respx.Router) -> None:
    actions = feed(router, [action(2, 1, "addMemberToCard", member=(ALICE, "alicemoreau"))])
    cards = open_cards(router, card(1, list_id=DOING, members=(ALICE,)), card(2))
    adapter = make()
    (page,) = pull(adapter)
    assert [o.ref for o in page.observations] == [cid(1), cid(2)]
    request = actions.calls.last.request
    assert query(request) == {
        "filter": ",".join(ACTION_TYPES),
        "limit": "1000",
        "memberCreator_fields": "username",
        "key": KEY,
        "token": TOKEN,
    }
    assert query(cards.calls.last.request)["fields"] == CARD_FIELDS
    lists = router.routes[0].calls.last.request
    assert (query(lists)["fields"], query(lists)["filter"]) == ("name,closed", "all")
    assert adapter.request_counts() == {"GET 200": 4}
    assert page.cursor == {"boards": {BOARD: {"since": aid(2), "swept": "2024-05-01T12:00:00Z"}}}


def test_card_maps_to_an_observation(make: Any, router: respx.Router) -> None:
    feed(router, [action(2, 1, "addMemberToCard", "2024-05-01T11:40:00.000Z", (BOB, "bobokafor"))])
    open_cards(
        router,
        card(1, list_id=DOING, members=(BOB, ALICE), name="Printer", desc="See OPS-7 and REQ-2"),
    )
    (obs,) = observations(pull(make()))
    assert obs.source == "biz"
    assert obs.ref == cid(1)
    assert obs.url == "https://trello.com/c/Sh000001/1-card-1"
    assert obs.title == "Printer"
    assert obs.state == "in_progress"
    assert obs.owners == ("bobokafor", "alicemoreau")
    assert obs.updated_at == datetime(2024, 5, 1, 11, 50, tzinfo=UTC)
    assert obs.owner_changed_at == datetime(2024, 5, 1, 11, 40, tzinfo=UTC)
    assert obs.keys == ("trello:Sh000001",)
    assert obs.mentions == ("jira:OPS-7", "req:2")


@pytest.mark.parametrize(
    ("list_id", "closed", "overrides", "expected"),
    [
        (TODO, False, {}, "open"),
        (DOING, False, {}, "in_progress"),
        (DONE, False, {}, "done"),
        (ODD, False, {}, "open"),
        (ODD, False, {"states": {"Waiting on Customer": "blocked"}}, "blocked"),
        (DOING, False, {"states": {"doing": "blocked"}}, "blocked"),
        (DOING, True, {}, "done"),
        (DOING, True, {"archived": "cancelled"}, "cancelled"),
    ],
)
def test_state_from_the_list_name_and_archiving(
    make: Any,
    router: respx.Router,
    list_id: str,
    closed: bool,
    overrides: dict[str, Any],
    expected: str,
) -> None:
    feed(router, [])
    open_cards(router, card(1, list_id=list_id, closed=closed))
    assert observations(pull(make(**overrides)))[0].state == expected


# -- the feed and the no-change cycle ------------------------------------------------------


def test_no_change_cycle_is_one_request_per_board(make: Any, router: respx.Router) -> None:
    first = feed(router, [])
    second = feed(router, [], board=OTHER_BOARD)
    adapter = make(boards=[BOARD, OTHER_BOARD])
    cursor = {"boards": {BOARD: {"since": aid(9), "swept": SWEPT}, OTHER_BOARD: {"swept": SWEPT}}}
    assert pull(adapter, cursor) == []
    assert adapter.request_counts() == {"GET 200": 2}
    assert query(first.calls.last.request)["since"] == aid(9)
    assert "since" not in query(second.calls.last.request)


def test_changed_cards_are_read_one_by_one(make: Any, router: respx.Router) -> None:
    feed(
        router,
        [
            action(12, 2, "removeMemberFromCard", "2024-05-01T11:56:00.000Z", (ALICE, "a")),
            action(11, 1, "updateCard", "2024-05-01T11:55:00.000Z"),
            action(10, 2, "addMemberToCard", "2024-05-01T11:54:00.000Z", (BOB, "bobokafor")),
            action(9, 9, "updateCard"),  # the action the cursor points at: already read
        ],
    )
    one = one_card(router, card(1, at="2024-05-01T11:55:00.000Z"))
    two = one_card(router, card(2, members=(BOB,), at="2024-05-01T11:56:00.000Z"))
    nine = one_card(router, card(9))
    adapter = make()
    (page,) = pull(adapter, settled(since=aid(9)))
    assert [o.ref for o in page.observations] == [cid(1), cid(2)]
    assert page.observations[1].owner_changed_at == datetime(2024, 5, 1, 11, 56, tzinfo=UTC)
    assert page.observations[0].owner_changed_at is None
    assert query(one.calls.last.request)["fields"] == CARD_FIELDS
    assert (one.call_count, two.call_count, nine.call_count) == (1, 1, 0)
    assert page.cursor == {"boards": {BOARD: {"since": aid(12), "swept": SWEPT}}}


def test_many_changed_cards_are_read_in_one_listing(make: Any, router: respx.Router) -> None:
    feed(router, [action(20 + n, n) for n in range(1, 8)])
    listing = open_cards(router, *(card(n) for n in range(1, 7)), card(50))
    archived = one_card(router, card(7, closed=True))
    (page,) = pull(make(), settled(since=aid(1)))
    assert sorted(o.ref for o in page.observations) == sorted(cid(n) for n in range(1, 8))
    assert listing.call_count == 1
    assert archived.call_count == 1  # not among the open cards, so read by itself
    assert page.observations[-1].state == "done"


def test_a_full_answer_of_actions_triggers_a_sweep(make: Any, router: respx.Router) -> None:
    feed(router, [action(n, 1) for n in range(1000, 0, -1)])
    listing = open_cards(router, card(1), card(2))
    (page,) = pull(make(), settled(since=aid(0)))
    assert listing.call_count == 1
    assert {o.ref for o in page.observations} == {cid(1), cid(2)}
    assert page.cursor is not None
    assert page.cursor["boards"][BOARD]["swept"] == "2024-05-01T12:00:00Z"


def test_sweep_comes_back_every_sweep_every(make: Any, router: respx.Router) -> None:
    feed(router, [], [])
    listing = open_cards(router, card(1))
    adapter = make(sweep_every="15m")
    cursor = {"boards": {BOARD: {"since": aid(1), "swept": "2024-05-01T11:50:00Z"}}}
    assert pull(adapter, cursor) == []  # ten minutes since the last sweep: not yet
    adapter.clock = lambda: NOW + timedelta(minutes=5)
    (page,) = pull(adapter, cursor)
    assert listing.call_count == 1
    assert [o.ref for o in page.observations] == [cid(1)]


def test_card_moved_to_another_board_or_deleted_is_skipped(make: Any, router: respx.Router) -> None:
    feed(router, [action(3, 1), action(2, 2)])
    one_card(router, card(1, board=OTHER_BOARD))
    router.get(f"/cards/{cid(2)}").mock(
        return_value=httpx.Response(404, text="The requested resource was not found.")
    )
    (page,) = pull(make(), settled())
    assert page.observations == []
    assert page.quarantined == []
    assert page.cursor is not None
    assert page.cursor["boards"][BOARD]["since"] == aid(3)


def test_malformed_actions_are_skipped(make: Any, router: respx.Router) -> None:
    good = action(5, 1)
    feed(
        router,
        [
            "junk",
            {**action(6, 2), "type": "deleteCard"},
            {**action(7, 3), "date": "never"},
            {"id": aid(8), "type": "updateCard", "date": good["date"], "data": {"card": "x"}},
            good,
        ],
    )
    one = one_card(router, card(1))
    (page,) = pull(make(), settled())
    assert [o.ref for o in page.observations] == [cid(1)]
    assert one.call_count == 1


def test_unreadable_cursor_starts_over_with_a_sweep(make: Any, router: respx.Router) -> None:
    route = feed(router, [])
    listing = open_cards(router)
    pull(make(), {"boards": {BOARD: {"since": "../../admin", "swept": "whenever"}}})
    assert "since" not in query(route.calls.last.request)
    assert listing.call_count == 1


# -- identity ------------------------------------------------------------------------------


def test_owners_are_usernames_unless_configured_by_member_id(
    make: Any, router: respx.Router
) -> None:
    feed(router, [])
    stranger = "70b000000000000000009999"
    open_cards(router, card(1, members=(ALICE, BOB)), card(2, members=(stranger,)))
    people = [
        Person(id="alice", handles={"trello": ALICE}),
        Person(id="bob"),
        Person(id="sam", handles={"trello": stranger}),
    ]
    (page,) = pull(make(people=people))
    # Alice is configured by id; Bob by nobody (his username); Sam left the board, but a
    # person claims his member id, so he is still someone syncd can name.
    assert [o.owners for o in page.observations] == [(ALICE, "bobokafor"), (stranger,)]
    assert page.quarantined == []


def test_a_member_nobody_can_name_quarantines_the_card(make: Any, router: respx.Router) -> None:
    feed(router, [])
    stranger = "70b000000000000000009999"
    open_cards(router, card(1, members=(ALICE, stranger)), card(2, members=(BOB,)))
    (page,) = pull(make())
    assert [o.ref for o in page.observations] == [cid(2)]
    (quarantined,) = page.quarantined
    assert quarantined.ref == cid(1)
    assert f"{stranger}, who is not a member of the board" in quarantined.reason


def test_unknown_list_or_member_refreshes_the_caches_once(make: Any, router: respx.Router) -> None:
    feed(router, [action(2, 1), action(1, 2)])
    one_card(router, card(1, members=(CAROL,), list_id=DONE))
    one_card(router, card(2, members=(CAROL,), list_id=DONE))
    (page,) = pull(make(), settled())
    assert [o.owners for o in page.observations] == [("carol",), ("carol",)]
    assert [o.state for o in page.observations] == ["done", "done"]
    lists, members = router.routes[0], router.routes[1]
    assert (lists.call_count, members.call_count) == (1, 1)


# -- hostile input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("a string", "not an object"),
        ({**card(1), "id": "short"}, "id is missing"),
        ({**card(1), "dateLastActivity": 5}, "dateLastActivity"),
        ({**card(1), "name": None}, "name"),
        ({**card(1), "desc": ["x"]}, "desc"),
        ({**card(1), "shortLink": "../x"}, "shortLink"),
        ({**card(1), "url": "javascript:alert(1)"}, "url"),
        ({**card(1), "closed": "no"}, "closed"),
        ({**card(1), "idList": None}, "idList"),
        ({**card(1), "idMembers": "alice"}, "owners are unknown"),
        ({**card(1), "idMembers": [ALICE] * 101}, "more than a card holds"),
        ({**card(1), "idMembers": ["alice"]}, "not a member id"),
    ],
)
def test_bad_card_is_quarantined_and_the_page_goes_on(
    make: Any, router: respx.Router, raw: Any, reason: str
) -> None:
    feed(router, [])
    open_cards(router, raw, card(2))
    (page,) = pull(make())
    assert [o.ref for o in page.observations] == [cid(2)]
    (quarantined,) = page.quarantined
    assert reason in quarantined.reason


def test_an_unchanged_bad_card_is_reported_once_across_sweeps(
    make: Any, router: respx.Router
) -> None:
    bad = {**card(1), "closed": "maybe"}
    feed(router, [], [], [], [])
    listing = router.get(f"/boards/{BOARD}/cards/open").mock(
        side_effect=[
            httpx.Response(200, json=[bad]),
            httpx.Response(200, json=[bad]),
            httpx.Response(200, json=[{**bad, "name": "edited, still bad"}]),
            httpx.Response(200, json=[card(1)]),
        ]
    )
    adapter = make()
    reported, cursor = [], None
    for hour in range(4):
        adapter.clock = lambda h=hour: NOW + timedelta(hours=h)
        (page,) = pull(adapter, cursor)
        reported.append(len(page.quarantined))
        cursor = page.cursor
    assert listing.call_count == 4  # a sweep every hour
    assert reported == [1, 0, 1, 0]  # again only when the card changed
    assert cursor is not None
    assert "quarantined" not in cursor["boards"][BOARD]  # readable again: forgotten


def test_quarantine_payload_is_redacted_and_bounded(make: Any, router: respx.Router) -> None:
    feed(router, [])
    open_cards(router, {**card(1), "closed": f"{TOKEN} {KEY}", "desc": "z" * 5000})
    (page,) = pull(make())
    payload = page.quarantined[0].payload
    assert TOKEN not in payload
    assert KEY not in payload
    assert len(payload) <= 1000


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (f"/boards/{BOARD}/actions", {"error": "not a list"}),
        (f"/boards/{BOARD}/cards/open", "nope"),
        (f"/boards/{BOARD}/lists", {}),
    ],
)
def test_unreadable_listing_fails_the_poll(
    make: Any, router: respx.Router, path: str, body: Any
) -> None:
    feed(router, [])
    open_cards(router)
    router.get(path).mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(MalformedResponse):
        pull(make())


# -- writing -------------------------------------------------------------------------------


def card_members(*members: str) -> httpx.Response:
    return httpx.Response(200, json={"id": cid(1), "idMembers": list(members), "idBoard": BOARD})


def test_write_adds_then_removes_and_reads_back(make: Any, router: respx.Router) -> None:
    reads = router.get(f"/cards/{cid(1)}").mock(
        side_effect=[card_members(ALICE), card_members(BOB)]
    )
    add = router.post(f"/cards/{cid(1)}/idMembers").mock(return_value=httpx.Response(200, json=[]))
    remove = router.delete(f"/cards/{cid(1)}/idMembers/{ALICE}").mock(
        return_value=httpx.Response(200, json=[])
    )
    adapter = make()
    assert adapter.read_owners(cid(1)) == ("alicemoreau",)
    assert adapter.write_owner(cid(1), "bobokafor", ("alicemoreau",), HANDOFF) == ("bobokafor",)
    assert query(add.calls.last.request)["value"] == BOB
    assert remove.call_count == 1
    assert add.calls.last.request.url.params["token"] == TOKEN
    # The owners read just before the write are not read again; the result is read back.
    assert reads.call_count == 2
    assert query(reads.calls[0].request)["fields"] == "idMembers,idBoard"
    order = [c.request.method for c in router.calls]
    assert order.index("POST") < order.index("DELETE")


def test_write_leaves_a_member_already_there_and_co_members_alone(
    make: Any, router: respx.Router
) -> None:
    router.get(f"/cards/{cid(1)}").mock(
        side_effect=[card_members(ALICE, BOB, CAROL), card_members(BOB, CAROL)]
    )
    add = router.post(f"/cards/{cid(1)}/idMembers")
    remove = router.delete(f"/cards/{cid(1)}/idMembers/{ALICE}").mock(
        return_value=httpx.Response(200, json=[])
    )
    owners = make().write_owner(cid(1), BOB, (ALICE,), HANDOFF)
    assert owners == ("bobokafor", "carol")
    assert add.call_count == 0
    assert remove.call_count == 1


def test_unassign_only_removes(make: Any, router: respx.Router) -> None:
    router.get(f"/cards/{cid(1)}").mock(side_effect=[card_members(ALICE), card_members()])
    remove = router.delete(f"/cards/{cid(1)}/idMembers/{ALICE}").mock(
        return_value=httpx.Response(200, json=[])
    )
    assert make().write_owner(cid(1), None, ("alicemoreau",), HANDOFF) == ()
    assert remove.call_count == 1


def test_write_to_someone_not_on_the_board_is_fatal(make: Any, router: respx.Router) -> None:
    router.get(f"/cards/{cid(1)}").mock(return_value=card_members(ALICE))
    with pytest.raises(FatalError, match="no member with username 'dave'"):
        make().write_owner(cid(1), "dave", ("alicemoreau",), HANDOFF)


def test_refused_write_is_fatal(make: Any, router: respx.Router) -> None:
    router.get(f"/cards/{cid(1)}").mock(return_value=card_members(ALICE))
    router.post(f"/cards/{cid(1)}/idMembers").mock(
        return_value=httpx.Response(401, text="unauthorized card permission requested")
    )
    with pytest.raises(FatalError, match="401"):
        make().write_owner(cid(1), BOB, (), HANDOFF)


@pytest.mark.parametrize("ref", ["Sh000001", "../boards/x", cid(1).upper()])
def test_refs_that_are_not_card_ids_are_refused(make: Any, ref: str) -> None:
    with pytest.raises(FatalError, match="not a Trello card id"):
        make().read_owners(ref)


def test_unreadable_owner_answer_is_malformed(make: Any, router: respx.Router) -> None:
    router.get(f"/cards/{cid(1)}").mock(
        return_value=httpx.Response(200, json={"idMembers": ["x"], "idBoard": BOARD})
    )
    with pytest.raises(MalformedResponse):
        make().read_owners(cid(1))


# -- throttling and rate limits ------------------------------------------------------------


def test_sliding_window_waits_before_the_limit_is_passed(fake_time: FakeTime) -> None:
    window = SlidingWindow(3, 10.0, clock=fake_time.clock, sleep=fake_time.sleep)
    for _ in range(3):
        assert window.acquire() == 0
        fake_time.now += 1
    assert window.acquire() == pytest.approx(7.0)  # until the first send leaves the window
    assert window.in_window() == 3
    with pytest.raises(ValueError, match="limit"):
        SlidingWindow(0, 1.0)


def test_never_more_than_100_requests_in_any_10_seconds(
    make: Any, router: respx.Router, fake_time: FakeTime
) -> None:
    sent: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(fake_time.now)
        return httpx.Response(200, json=[])

    router.get(f"/boards/{BOARD}/actions").mock(side_effect=answer)
    adapter = make()
    for _ in range(250):
        assert pull(adapter, settled()) == []
    assert len(sent) == 250
    assert fake_time.slept  # it had to wait, before sending
    for i, start in enumerate(sent):
        assert sum(1 for t in sent[i:] if t < start + 10.0) <= 100
    assert TOKEN_LIMIT <= 100
    assert KEY_LIMIT <= 300


def test_the_token_window_is_shared_by_every_source_using_the_token() -> None:
    first = shared_window("trello-token", TOKEN, TOKEN_LIMIT, WINDOW)
    assert shared_window("trello-token", TOKEN, TOKEN_LIMIT, WINDOW) is first
    assert shared_window("trello-token", TOKEN + "x", TOKEN_LIMIT, WINDOW) is not first
    assert shared_window("trello-key", TOKEN, KEY_LIMIT, WINDOW) is not first


def test_default_windows_count_per_token_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = TrelloAdapter(make_config(monkeypatch))
    try:
        windows = adapter.windows
        assert [(w.limit, w.period) for w in windows] == [(95, 10.0), (285, 10.0)]
        assert windows[0] is shared_window("trello-token", TOKEN, TOKEN_LIMIT, WINDOW)
    finally:
        adapter.close()


def test_throttle_is_thread_safe(fake_time: FakeTime) -> None:
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            fake_time.sleep(seconds)

    window = SlidingWindow(10, 10.0, clock=fake_time.clock, sleep=sleep)
    threads = [threading.Thread(target=window.acquire) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert window.in_window() == 10
    assert sum(fake_time.slept) == pytest.approx(20.0)


@pytest.mark.parametrize("code", ["API_TOKEN_LIMIT_EXCEEDED", "API_KEY_LIMIT_EXCEEDED"])
def test_token_limit_429_waits_out_the_window(
    make: Any, router: respx.Router, sleeps: list[float], code: str
) -> None:
    body = {"error": code, "message": "Rate limit exceeded"}
    route = router.get(f"/boards/{BOARD}/actions").mock(
        side_effect=[httpx.Response(429, json=body), httpx.Response(200, json=[])]
    )
    assert pull(make(), settled()) == []
    assert route.call_count == 2
    assert sleeps == [10.0]


def test_retry_after_wins_and_5xx_is_retried(
    make: Any, router: respx.Router, sleeps: list[float]
) -> None:
    router.get(f"/boards/{BOARD}/actions").mock(
        side_effect=[
            httpx.Response(429, headers={"retry-after": "3"}, text="slow down"),
            httpx.Response(503),
            httpx.Response(200, json=[]),
        ]
    )
    pull(make(), settled())
    assert sleeps == [3.0, 1.0]


def test_other_client_errors_are_fatal(make: Any, router: respx.Router) -> None:
    route = router.get(f"/boards/{BOARD}/actions").mock(
        return_value=httpx.Response(401, text="invalid token")
    )
    with pytest.raises(FatalError, match="invalid token"):
        pull(make(), settled())
    assert route.call_count == 1


def test_retries_give_up_as_retriable(make: Any, router: respx.Router) -> None:
    router.get(f"/boards/{BOARD}/actions").mock(return_value=httpx.Response(500))
    with pytest.raises(RetriableError):
        pull(make(), settled())


def test_rate_budget_from_the_token_headers(make: Any, router: respx.Router) -> None:
    router.get(f"/boards/{BOARD}/actions").mock(
        return_value=httpx.Response(
            200,
            json=[],
            headers={"x-rate-limit-api-token-max": "100", "x-rate-limit-api-token-remaining": "97"},
        )
    )
    adapter = make()
    assert adapter.rate_budget() is None
    pull(adapter, settled())
    budget = adapter.rate_budget()
    assert budget is not None
    assert (budget.remaining, budget.limit) == (97, 100)


# -- secrets -------------------------------------------------------------------------------


def test_key_and_token_never_appear_in_errors_or_the_trace(
    make: Any, router: respx.Router, tmp_path: Path
) -> None:
    router.get(f"/boards/{BOARD}/actions").mock(
        return_value=httpx.Response(400, text=f"invalid token {TOKEN} for key {KEY}")
    )
    trace_path = tmp_path / "trace.jsonl"
    with pytest.raises(SourceError) as caught:
        pull(make(trace=TraceWriter(trace_path)), settled())
    message = str(caught.value)
    assert TOKEN not in message
    assert KEY not in message
    assert "key=REDACTED" in message
    assert "token=REDACTED" in message
    trace = trace_path.read_text()
    assert TOKEN not in trace
    assert KEY not in trace
    record = json.loads(trace)
    assert "token=REDACTED" in record["url"]
    assert "key=REDACTED" in record["url"]


def test_transport_failures_name_no_secret(make: Any, router: respx.Router) -> None:
    router.get(f"/boards/{BOARD}/actions").mock(
        side_effect=httpx.ConnectError(f"cannot reach {API}/?token={TOKEN}")
    )
    with pytest.raises(RetriableError) as caught:
        pull(make(), settled())
    assert TOKEN not in str(caught.value)
    assert KEY not in str(caught.value)


# -- identity: text and attachments --------------------------------------------------------


def attachment_list(*urls: str) -> httpx.Response:
    return httpx.Response(
        200,
        json=[
            {"id": f"66a{n:021d}", "name": f"link {n}", "url": url} for n, url in enumerate(urls)
        ],
    )


def test_text_declarations_and_relations(make: Any, router: respx.Router) -> None:
    feed(router, [action(10, 1)])
    one_card(router, card(1, name="[OPS-7] Login", desc="GitHub: acme/api#3\nSee also OPS-9"))
    [obs] = observations(pull(make(), settled(since=aid(1))))
    assert obs.declared == ("jira:OPS-7", "github:acme/api#3")
    assert obs.mentions == ("jira:OPS-9",)
    assert obs.relation_kinds == (("jira:OPS-9", "related"),)


def test_attachments_of_a_changed_card_link_it(make: Any, router: respx.Router) -> None:
    feed(router, [action(10, 1, "addAttachmentToCard")])
    one_card(router, card(1, attachments=5))
    router.routes["attachments"].mock(
        return_value=attachment_list(
            "https://github.com/acme/api/issues/12",
            "https://acme.atlassian.net/browse/OPS-7",
            "https://trello.com/c/AbCd1234/2-other-card",
            "https://docs.example.com/spec.pdf",
            "https://trello.com/c/Sh000001/1-card-1",  # itself
        )
    )
    [obs] = observations(pull(make(), settled(since=aid(1))))
    assert obs.declared == ("github:acme/api#12", "jira:OPS-7")
    assert obs.mentions == ("trello:AbCd1234",)
    assert obs.relation_kinds == (("trello:AbCd1234", "related"),)
    request = router.routes["attachments"].calls.last.request
    assert request.url.path == f"/1/cards/{cid(1)}/attachments"
    assert query(request)["fields"] == "url,name"


def test_the_feed_asks_for_attachment_actions(make: Any, router: respx.Router) -> None:
    actions = feed(router, [])
    pull(make(), settled(since=aid(1)))
    assert "addAttachmentToCard" in query(actions.calls.last.request)["filter"].split(",")


def test_a_card_without_attachments_costs_no_request(make: Any, router: respx.Router) -> None:
    feed(router, [action(10, 1)])
    one_card(router, card(1, attachments=0))
    [obs] = observations(pull(make(), settled(since=aid(1))))
    assert obs.declared == ()
    assert router.routes["attachments"].call_count == 0


def test_sweeps_read_attachments_once_until_they_change(make: Any, router: respx.Router) -> None:
    feed(router, [], [], [])
    listing = router.get(f"/boards/{BOARD}/cards/open").mock(
        side_effect=[
            httpx.Response(200, json=[card(1, attachments=1), card(2)]),
            httpx.Response(200, json=[card(1, attachments=1), card(2)]),
            httpx.Response(200, json=[card(1, attachments=2), card(2)]),
        ]
    )
    router.routes["attachments"].mock(
        side_effect=[
            attachment_list("https://github.com/acme/api/issues/12"),
            attachment_list(
                "https://github.com/acme/api/issues/12", "https://acme.atlassian.net/browse/OPS-7"
            ),
        ]
    )
    adapter = make()
    first = observations(pull(adapter))  # the first pull is a sweep
    second = observations(pull(adapter))  # no cursor: a sweep again, nothing changed
    third = observations(pull(adapter))  # a sweep that finds a second attachment
    assert listing.call_count == 3
    assert router.routes["attachments"].call_count == 2
    assert first[0].declared == second[0].declared == ("github:acme/api#12",)
    assert third[0].declared == ("github:acme/api#12", "jira:OPS-7")
    assert [o.declared for o in first[1:]] == [()]


def test_unreadable_attachments_quarantine_the_card(make: Any, router: respx.Router) -> None:
    feed(router, [action(11, 2), action(10, 1)])
    one_card(router, card(1, attachments=1))
    one_card(router, card(2, attachments=1))
    router.routes["attachments"].mock(
        side_effect=lambda request: (
            httpx.Response(200, json={"no": "list"})
            if cid(1) in request.url.path
            else attachment_list()
        )
    )
    (page,) = pull(make(), settled(since=aid(1)))
    assert [o.ref for o in page.observations] == [cid(2)]
    assert [(q.ref, q.reason) for q in page.quarantined] == [
        (cid(1), "its attachments answer is a JSON dict, not a list")
    ]
