"""The Trello emulator over real HTTP: boards, lists, cards, the action feed, card members,
rate limits and faults."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from syncd.sandbox.server import Fault
from syncd.sandbox.trello import DEFAULT_KEY, DEFAULT_TOKEN, TrelloEmulator
from tests.clocks import FakeClock

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
ID = re.compile(r"^[0-9a-f]{24}$")
CARD_FIELDS = "name,desc,idList,idMembers,closed,dateLastActivity,shortLink,url,idBoard,labels"


class Ticker:
    """A monotonic clock for the rate limiter."""

    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(trello_emulator: TrelloEmulator) -> FakeClock:
    trello_emulator.clock = fake = FakeClock(T0)
    return fake


@pytest.fixture
def board(trello_emulator: TrelloEmulator, clock: FakeClock) -> str:
    return trello_emulator.add_board("Ops desk", members=["alicemoreau", "bobokafor", "carol"])


@pytest.fixture
def api(trello_emulator: TrelloEmulator) -> Iterator[httpx.Client]:
    params = {"key": DEFAULT_KEY, "token": DEFAULT_TOKEN}
    with httpx.Client(base_url=trello_emulator.base_url + "/", params=params) as c:
        yield c


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


# -- ids, boards, lists, cards -------------------------------------------------------------
def test_ids_are_minted_like_trellos(
    trello_emulator: TrelloEmulator, board: str, clock: FakeClock
) -> None:
    card = trello_emulator.create_card(board, "To Do", "x")
    assert ID.match(board)
    assert ID.match(card)
    assert int(card[:8], 16) == int(T0.timestamp())  # an ObjectId starts with its time
    assert card != board
    short = trello_emulator.card(card)["shortLink"]
    assert re.fullmatch(r"[A-Za-z0-9]{8}", short)
    assert trello_emulator.short_url(card) == f"https://trello.com/c/{short}"


def test_board_and_lists(trello_emulator: TrelloEmulator, board: str, api: httpx.Client) -> None:
    brief = ok(api.get(f"boards/{board}", params={"fields": "name,url,shortUrl,closed"}))
    assert set(brief) == {"id", "name", "url", "shortUrl", "closed"}
    assert brief["name"] == "Ops desk"
    assert brief["url"].startswith(brief["shortUrl"] + "/ops-desk")
    trello_emulator.add_list(board, "Old stuff")
    trello_emulator.archive_list(board, "Old stuff")
    lists = ok(api.get(f"boards/{board}/lists", params={"fields": "name,closed"}))
    assert [x["name"] for x in lists] == ["To Do", "Doing", "Done"]
    assert set(lists[0]) == {"id", "name", "closed"}
    every = ok(api.get(f"boards/{board}/lists", params={"filter": "all", "fields": "name"}))
    assert [x["name"] for x in every][-1] == "Old stuff"


def test_cards_with_fields_and_filters(
    trello_emulator: TrelloEmulator, board: str, api: httpx.Client
) -> None:
    first = trello_emulator.create_card(board, "Doing", "Printer", "See OPS-7", members=["carol"])
    second = trello_emulator.create_card(board, "To Do", "Toner")
    trello_emulator.archive_card(second)
    open_cards = ok(api.get(f"boards/{board}/cards/open", params={"fields": CARD_FIELDS}))
    assert [c["id"] for c in open_cards] == [first]
    card = open_cards[0]
    assert set(card) == {"id", *CARD_FIELDS.split(",")}
    assert card["idMembers"] == [trello_emulator.member_id("carol")]
    assert card["dateLastActivity"] == "2024-05-01T10:00:00.000Z"
    assert card["url"] == f"https://trello.com/c/{card['shortLink']}/1-printer"
    every = ok(api.get(f"boards/{board}/cards/all", params={"fields": "closed"}))
    assert {c["id"]: c["closed"] for c in every} == {first: False, second: True}
    assert [c["id"] for c in ok(api.get(f"boards/{board}/cards"))] == [first]
    full = ok(api.get(f"cards/{first}"))
    assert {"badges", "labels", "cover", "idShort", "pos"} <= set(full)


def test_members(trello_emulator: TrelloEmulator, board: str, api: httpx.Client) -> None:
    members = ok(api.get(f"boards/{board}/members"))
    assert [m["username"] for m in members] == ["syncdbot", "alicemoreau", "bobokafor", "carol"]
    assert set(members[0]) == {"id", "username", "fullName"}
    carol = ok(api.get("members/carol"))
    assert carol["id"] == trello_emulator.member_id("carol")
    assert carol["url"] == "https://trello.com/carol"
    assert ok(api.get("members/me"))["username"] == "syncdbot"


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("boards/not-an-id", 400, "invalid id"),
        ("boards/5f1e6b7c8d9e0a1b2c3d4e01", 404, "The requested resource was not found."),
        ("cards/5f1e6b7c8d9e0a1b2c3d4e01", 404, "The requested resource was not found."),
        ("members/nobody", 404, "The requested resource was not found."),
        (
            "cards/5f1e6b7c8d9e0a1b2c3d4e01/idMembers?value=nobody",
            404,
            "The requested resource was not found.",
        ),
    ],
)
def test_errors_are_plain_text(path: str, status: int, body: str) -> None:
    # Some of these requests are malformed on purpose, so this emulator records no trace.
    with TrelloEmulator() as trello:
        params = {"key": DEFAULT_KEY, "token": DEFAULT_TOKEN}
        method = "POST" if "idMembers" in path else "GET"
        response = httpx.request(method, f"{trello.base_url}/{path}", params=params)
    assert (response.status_code, response.text) == (status, body)
    assert response.headers["content-type"].startswith("text/plain")


# -- the action feed -----------------------------------------------------------------------
def test_actions_newest_first_with_filter_since_and_limit(
    trello_emulator: TrelloEmulator, board: str, api: httpx.Client, clock: FakeClock
) -> None:
    card = trello_emulator.create_card(board, "To Do", "Printer", members=["alicemoreau"])
    clock.advance(60)
    trello_emulator.set_members(card, ["bobokafor"], by="alicemoreau")
    clock.advance(60)
    trello_emulator.move_card(card, "Doing", by="bobokafor")
    every = ok(api.get(f"boards/{board}/actions"))
    assert [a["type"] for a in every] == [
        "updateCard",
        "addMemberToCard",
        "removeMemberFromCard",
        "addMemberToCard",
        "createCard",
    ]
    move, add_bob, remove_alice = every[0], every[1], every[2]
    assert move["data"]["listBefore"]["name"] == "To Do"
    assert move["data"]["listAfter"]["name"] == "Doing"
    assert move["data"]["card"]["idList"] == move["data"]["listAfter"]["id"]
    assert move["date"] == "2024-05-01T10:02:00.000Z"
    assert add_bob["member"]["username"] == "bobokafor"
    assert add_bob["memberCreator"]["username"] == "alicemoreau"
    assert remove_alice["data"]["idMember"] == trello_emulator.member_id("alicemoreau")
    members_only = ok(
        api.get(
            f"boards/{board}/actions",
            params={"filter": "addMemberToCard,removeMemberFromCard", "memberCreator": "false"},
        )
    )
    assert len(members_only) == 3
    assert "memberCreator" not in members_only[0]
    since = ok(api.get(f"boards/{board}/actions", params={"since": remove_alice["id"]}))
    assert [a["id"] for a in since] == [move["id"], add_bob["id"]]  # the action itself excluded
    by_date = ok(api.get(f"boards/{board}/actions", params={"since": "2024-05-01T10:01:30Z"}))
    assert [a["id"] for a in by_date] == [move["id"]]
    before = ok(api.get(f"boards/{board}/actions", params={"before": add_bob["id"], "limit": 1}))
    assert [a["id"] for a in before] == [remove_alice["id"]]


def test_actions_limit_default_and_maximum(
    trello_emulator: TrelloEmulator, board: str, api: httpx.Client
) -> None:
    for n in range(60):
        trello_emulator.create_card(board, "To Do", f"card {n}")
    assert len(ok(api.get(f"boards/{board}/actions"))) == 50
    assert len(ok(api.get(f"boards/{board}/actions", params={"limit": 1000}))) == 60
    too_many = api.get(f"boards/{board}/actions", params={"limit": 1001})
    assert (too_many.status_code, too_many.text) == (400, "invalid value for limit")


def test_archive_rename_and_moves_between_boards(
    trello_emulator: TrelloEmulator, board: str, api: httpx.Client
) -> None:
    other = trello_emulator.add_board("Elsewhere")
    card = trello_emulator.create_card(other, "To Do", "Stray")
    trello_emulator.move_card_to_board(card, board, "Doing")
    trello_emulator.edit_card(card, name="Found", desc="REQ-4")
    trello_emulator.archive_card(card)
    kinds = [a["type"] for a in ok(api.get(f"boards/{board}/actions"))]
    assert kinds == ["updateCard", "updateCard", "updateCard", "moveCardToBoard"]
    feed = ok(api.get(f"boards/{board}/actions", params={"filter": "updateCard,createCard"}))
    assert [a["data"]["old"] for a in feed] == [{"closed": False}, {"desc": ""}, {"name": "Stray"}]
    assert ok(api.get(f"cards/{card}", params={"fields": "idBoard,closed"})) == {
        "id": card,
        "idBoard": board,
        "closed": True,
    }


def test_leaving_a_board_leaves_its_cards_without_a_card_action(
    trello_emulator: TrelloEmulator, board: str, api: httpx.Client
) -> None:
    card = trello_emulator.create_card(board, "To Do", "x", members=["carol"])
    before = len(ok(api.get(f"boards/{board}/actions")))
    trello_emulator.remove_board_member(board, "carol")
    assert trello_emulator.members_of(card) == []
    assert len(ok(api.get(f"boards/{board}/actions"))) == before


# -- card members --------------------------------------------------------------------------
def test_add_and_remove_card_members(
    trello_emulator: TrelloEmulator, board: str, api: httpx.Client, clock: FakeClock
) -> None:
    card = trello_emulator.create_card(board, "To Do", "x", members=["alicemoreau"])
    alice, bob = trello_emulator.member_id("alicemoreau"), trello_emulator.member_id("bobokafor")
    clock.advance(30)
    added = ok(api.post(f"cards/{card}/idMembers", params={"value": bob}))
    assert [m["username"] for m in added] == ["alicemoreau", "bobokafor"]
    assert trello_emulator.card(card)["dateLastActivity"] == "2024-05-01T10:00:30.000Z"
    again = api.post(f"cards/{card}/idMembers", params={"value": bob})
    assert (again.status_code, again.text) == (400, "member is already on the card")
    left = ok(api.delete(f"cards/{card}/idMembers/{alice}"))
    assert [m["id"] for m in left] == [bob]
    gone = api.delete(f"cards/{card}/idMembers/{alice}")
    assert (gone.status_code, gone.text) == (400, "member is not on the card")
    actions = ok(api.get(f"boards/{board}/actions", params={"limit": 2}))
    assert [a["type"] for a in actions] == ["removeMemberFromCard", "addMemberToCard"]
    assert actions[0]["memberCreator"]["username"] == "syncdbot"


def test_only_board_members_can_be_added(
    trello_emulator: TrelloEmulator, board: str, api: httpx.Client
) -> None:
    card = trello_emulator.create_card(board, "To Do", "x")
    outsider = trello_emulator.add_member("outsider")
    refused = api.post(f"cards/{card}/idMembers", params={"value": outsider})
    assert (refused.status_code, refused.text) == (401, "unauthorized member permission requested")
    stranger = api.post(f"cards/{card}/idMembers", params={"value": "5f1e6b7c8d9e0a1b2c3d4e01"})
    assert (stranger.status_code, stranger.text) == (400, "invalid value for value")


# -- auth, rate limits and faults ----------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "invalid key"),
        ({"key": DEFAULT_KEY}, "invalid token"),
        ({"key": DEFAULT_KEY, "token": "nope"}, "invalid token"),
    ],
)
def test_key_and_token_are_required(params: dict[str, str], message: str) -> None:
    # Requests without credentials are off-contract, so this emulator records no trace.
    with TrelloEmulator() as trello:
        board = trello.add_board("x")
        response = httpx.get(f"{trello.base_url}/boards/{board}", params=params)
    assert (response.status_code, response.text) == (401, message)


def test_token_limit_over_a_sliding_window() -> None:
    ticker = Ticker()
    with TrelloEmulator(token_limit=3, key_limit=5, monotonic=ticker) as trello:
        params = {"key": DEFAULT_KEY, "token": DEFAULT_TOKEN}
        with httpx.Client(base_url=trello.base_url + "/", params=params) as c:
            answers = [c.get("members/me") for _ in range(4)]
            assert [a.status_code for a in answers] == [200, 200, 200, 429]
            assert answers[0].headers["x-rate-limit-api-token-remaining"] == "2"
            assert answers[0].headers["x-rate-limit-api-token-max"] == "3"
            assert answers[0].headers["x-rate-limit-api-token-interval-ms"] == "10000"
            assert answers[3].json() == {
                "error": "API_TOKEN_LIMIT_EXCEEDED",
                "message": "Rate limit exceeded",
            }
            ticker.now += 10.0  # the first three leave the window
            assert c.get("members/me").status_code == 200
            assert trello.refused == ["API_TOKEN_LIMIT_EXCEEDED"]


def test_key_limit_counts_every_token_of_the_key() -> None:
    ticker = Ticker()
    with TrelloEmulator(token_limit=10, key_limit=2, monotonic=ticker) as trello:
        url = f"{trello.base_url}/members/me"
        params = {"key": DEFAULT_KEY, "token": DEFAULT_TOKEN}
        assert [httpx.get(url, params=params).status_code for _ in range(3)] == [200, 200, 429]
        assert trello.refused == ["API_KEY_LIMIT_EXCEEDED"]


def test_fault_knobs(trello_emulator: TrelloEmulator, board: str, api: httpx.Client) -> None:
    limit = {"error": "API_TOKEN_LIMIT_EXCEEDED", "message": "Rate limit exceeded"}
    trello_emulator.faults.add(Fault(status=429, body=limit, path="/actions$"))
    trello_emulator.faults.add(Fault(status=502, body=b"Bad Gateway", path="/lists$"))
    limited = api.get(f"boards/{board}/actions")
    assert (limited.status_code, limited.json()) == (429, limit)
    assert api.get(f"boards/{board}/lists").status_code == 502
    assert api.get(f"boards/{board}/lists").status_code == 200
    trello_emulator.faults.add(Fault(drop=True))
    with pytest.raises(httpx.RemoteProtocolError):
        api.get(f"boards/{board}")
    trello_emulator.faults.add(Fault(delay=2))
    with pytest.raises(httpx.ReadTimeout):
        api.get(f"boards/{board}", timeout=0.2)
