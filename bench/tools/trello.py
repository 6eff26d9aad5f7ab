"""Trello for the benchmark: one board per source on one emulator.

The emulator is syncd.sandbox.trello's, with the same answers; syncd's own client-side
throttle (95 requests per 10 s per token, shared by every Trello source) stays on, since
it is how syncd behaves against Trello. The subclass changes what matters at scale:

* Fixed ids for boards and fixed short links for cards, so both processes can name them.
* The host's virtual clock (see bench.tools.base.VirtualClock).
* Each board's actions kept in their own list, so the action feed syncd reads
  (`since=<action id>`) costs the emulator time in proportion to what it returns; the
  reference code scans every action of every board, twice, for each request.
* Counters of member writes, and of those that changed nothing (or were refused as such).
"""

from __future__ import annotations

import bisect
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import tools
from bench.dataset import Change, Layout
from bench.tools.base import Kind, Tool, VirtualClock
from syncd.adapters.trello import WINDOW
from syncd.http import ApiClient
from syncd.models import Observation
from syncd.sandbox.server import HttpError, Request, Response, json_response
from syncd.sandbox.trello import (
    ACTIONS_MAX,
    DEFAULT_KEY,
    DEFAULT_TOKEN,
    TrelloEmulator,
    _Action,
    _Board,
)

KEY_ENV = "SYNCD_BENCH_TRELLO_KEY"
TOKEN_ENV = "SYNCD_BENCH_TRELLO_TOKEN"  # noqa: S105 - the name of a variable, not a secret
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def board_id(source: int) -> str:
    return f"5e1ec7ed{source:016x}"


def short_link(source: int, number: int) -> str:
    return f"b{source:x}{number:06d}"


def handle(person: int) -> str:
    return f"benchperson{person:02d}"


def reference(source: int, number: int) -> str:
    return f"https://trello.com/c/{short_link(source, number)}"


def key(source: int, number: int) -> str:
    return f"trello:{short_link(source, number)}"


# -- emulator side -------------------------------------------------------------------------


class BenchTrelloEmulator(TrelloEmulator):
    def __init__(self, clock: VirtualClock) -> None:
        # The emulator's own limits are Trello's; syncd throttles itself below them, and the
        # peer baseline (which does not) must not be refused either.
        super().__init__(clock=clock, token_limit=10**9, key_limit=10**9)
        self.writes = 0
        self.redundant = 0
        self._by_board: dict[str, list[_Action]] = {}
        self._seqs: dict[str, list[int]] = {}  # board -> its actions' seq, for bisect
        self._by_id: dict[str, _Action] = {}

    def add_bench_board(self, bid: str, name: str, usernames: list[str]) -> None:
        """add_board(), with the board id chosen by the caller."""
        with self.lock:
            board = _Board(bid, name, self._short_link(), self._mint(), self._mint())
            board.members.append(self.me)
            self._boards[bid] = board
            for username in usernames:
                self.add_board_member(bid, username)
            for list_name in ("To Do", "Doing", "Done"):
                self.add_list(bid, list_name)

    def _act(self, *args: Any, **kwargs: Any) -> None:
        super()._act(*args, **kwargs)
        action = self._actions[-1]
        self._by_board.setdefault(action.board, []).append(action)
        self._seqs.setdefault(action.board, []).append(action.seq)
        self._by_id[action.id] = action

    def _position(self, value: str | None) -> _Action | datetime | None:
        found = self._by_id.get(value) if value is not None else None
        return found if found is not None else super()._position(value)

    def _get_actions(self, request: Request) -> Response:
        bid = request.params["boardId"]
        try:
            limit = int(request.arg("limit") or 50)
        except ValueError:
            limit = -1
        if bid not in self._boards or not 0 <= limit <= ACTIONS_MAX:
            return super()._get_actions(request)  # the reference's errors
        types = {t.strip() for t in (request.arg("filter") or "all").split(",")}
        since = self._position(request.arg("since"))
        before = self._position(request.arg("before"))
        actions = self._by_board.get(bid, [])
        if isinstance(since, _Action):
            # Actions are appended in sequence order: those after `since` are a tail.
            actions = actions[bisect.bisect_right(self._seqs[bid], since.seq) :]
            since = None
        chosen = [
            a
            for a in reversed(actions)
            if ("all" in types or a.type in types)
            and (since is None or _after(a, since))
            and (before is None or _after(before, a))
        ][:limit]
        with_member = request.arg("member", "true") != "false"
        with_creator = request.arg("memberCreator", "true") != "false"
        return json_response(200, [self._action_json(a, with_member, with_creator) for a in chosen])

    def _counted(self, request: Request, respond: Any) -> Response:
        card = self._card_of(request)
        before = list(card.members)
        self.writes += 1
        try:
            response: Response = respond(request)
        except HttpError:
            self.redundant += 1  # "already on the card" / "not on the card"
            raise
        self.redundant += card.members == before
        return response

    def _add_card_member(self, request: Request) -> Response:
        return self._counted(request, super()._add_card_member)

    def _remove_card_member(self, request: Request) -> Response:
        return self._counted(request, super()._remove_card_member)


def _after(a: _Action | datetime, b: _Action | datetime) -> bool:
    if isinstance(a, _Action) and isinstance(b, _Action):
        return a.seq > b.seq
    at = a.date if isinstance(a, _Action) else a
    bt = b.date if isinstance(b, _Action) else b
    return at > bt


class TrelloTool(Tool[BenchTrelloEmulator]):
    kind = "trello"

    def __init__(self, clock: VirtualClock) -> None:
        self.emulator = BenchTrelloEmulator(clock)
        self.layout: Layout | None = None
        self._cards: dict[tuple[int, int], str] = {}
        self._person: dict[str, int] = {}  # username -> person index

    def seed(self, layout: Layout) -> None:
        self.layout = layout
        e = self.emulator
        people = [handle(p) for p in range(layout.people)]
        for p, username in enumerate(people):
            e.add_member(username)
            self._person[username] = p
        for s in layout.sources_of(self.kind):
            e.add_bench_board(board_id(s), f"Bench board {s}", people)
            for i in range(1, layout.counts[s] + 1):
                anchor = tools.reference(layout.kinds[0], 0, i) if layout.linked(s, i) else None
                owner = layout.owner(s, i)
                card_id = e.create_card(
                    board_id(s),
                    "Done" if layout.closed(s, i) else "To Do",
                    layout.title(s, i),
                    layout.body(s, i, anchor),
                    members=[handle(owner)] if owner is not None else [],
                )
                with e.lock:
                    e._cards[card_id].short_link = short_link(s, i)
                self._cards[(s, i)] = card_id

    def apply(self, change: Change) -> None:
        assert self.layout is not None, "seed() first"
        card_id = self._cards[(change.source, change.number)]
        e = self.emulator
        if change.field == "owner":
            person = change.person or 0
            if self.owner(change.source, change.number) == person:
                person = (person + 1) % self.layout.people
            e.set_members(card_id, [handle(person)])
        elif change.field == "title":
            title = f"{self.layout.title(change.source, change.number)} (edit {change.round})"
            e.edit_card(card_id, name=title)
        else:
            with e.lock:
                done = e._lists[e._cards[card_id].list_id].name == "Done"
            e.move_card(card_id, "To Do" if done else "Done")

    def owner(self, source: int, number: int) -> int | None:
        usernames = self.emulator.members_of(self._cards[(source, number)])
        return self._person.get(usernames[0]) if usernames else None


# -- benchmark side ------------------------------------------------------------------------


class TrelloKind(Kind):
    kind = "trello"
    env = {KEY_ENV: DEFAULT_KEY, TOKEN_ENV: DEFAULT_TOKEN}
    quiet_s = WINDOW

    def handle(self, person: int) -> str:
        return handle(person)

    def source_table(self, layout: Layout, source: int, info: dict[str, Any]) -> dict[str, Any]:
        return {
            "boards": [board_id(source)],
            "base_url": info["base_url"],
            "key": {"env": KEY_ENV},
            "token": {"env": TOKEN_ENV},
        }

    def observation(self, layout: Layout, source: int, number: int, name: str) -> Observation:
        owner = layout.owner(source, number)
        linked = layout.linked(source, number)
        return Observation(
            source=name,
            ref=f"cafe{source:04x}{number:016x}",
            url=reference(source, number),
            title=layout.title(source, number),
            state="done" if layout.closed(source, number) else "open",
            owners=(handle(owner),) if owner is not None else (),
            updated_at=_EPOCH + timedelta(seconds=number),
            keys=(key(source, number),),
            declared=(tools.key(layout.kinds[0], 0, number),) if linked else (),
        )

    def peer_poll(
        self,
        layout: Layout,
        source: int,
        info: dict[str, Any],
        snapshot: dict[str, tuple[Any, ...]],
    ) -> tuple[int, int, Counter[str]]:
        client = self._clients.get(source)
        if client is None:
            client = self._clients[source] = ApiClient(
                service="trello",
                source=f"peer-{source}",
                base_url=info["base_url"],
                params={"key": DEFAULT_KEY, "token": DEFAULT_TOKEN},
            )
        before = Counter(client.counts)
        # Trello lists a board's open cards in one answer, without paging.
        response = client.request(
            "GET",
            f"boards/{board_id(source)}/cards/open",
            params={"fields": "name,idList,idMembers,closed"},
        )
        fetched = differ = 0
        for raw in client.json(response):
            value = (tuple(raw["idMembers"]), raw["idList"], raw["name"])
            fetched += 1
            if snapshot.get(raw["id"]) != value:
                differ += 1
                snapshot[raw["id"]] = value
        return fetched, differ, Counter(client.counts) - before


TOOL = TrelloTool
KIND = TrelloKind
