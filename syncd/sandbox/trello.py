"""A stateful Trello REST emulator, laid out like https://api.trello.com/1.

It serves boards, lists, cards, board actions, card members and members, in the shapes the
real API produces (the contract test checks them against Trello's own description), with the
behaviours an adapter has to cope with:

* ``key`` and ``token`` in the query string of every request (401 without them);
* ids of 24 hex digits minted as Trello mints them (a timestamp, then random and a counter),
  and 8-character short links;
* board actions newest first, with ``filter``, ``since`` and ``before`` (an action id or a
  date, both exclusive) and ``limit`` (default 50, at most 1000);
* ``fields`` on every read, so a client can ask for just what it uses;
* the per-token and per-key rate limits, counted over a sliding 10 s window: past them, a 429
  with ``{"error": "API_TOKEN_LIMIT_EXCEEDED"}`` (or ``API_KEY_LIMIT_EXCEEDED``), and the
  ``x-rate-limit-api-*`` headers on every answer;
* errors as plain text, as Trello answers them ("invalid id", "member is already on the card").

Cards changed through the control API leave the same actions a person working in the web
app would: ``createCard``, ``updateCard`` (list moves, archiving, renames),
``addMemberToCard``, ``removeMemberFromCard``, and ``moveCardToBoard`` for a card brought in
from another board.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import string
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from syncd.http import TraceWriter
from syncd.sandbox.server import Emulator, HttpError, Request, Response, json_response

# The emulator's own credentials: they guard nothing but a loopback test server.
DEFAULT_KEY = "0123456789abcdef0123456789abcdef"
DEFAULT_TOKEN = "ATTA" + "5" * 60
TEXT_TYPE = "text/plain; charset=utf-8"
WINDOW = 10.0  # seconds over which Trello counts requests
ACTIONS_MAX = 1000
BOARD_FIELDS = [
    "name",
    "desc",
    "descData",
    "closed",
    "idOrganization",
    "pinned",
    "url",
    "shortUrl",
    "prefs",
    "labelNames",
]
CARD_FIELDS = [
    "badges",
    "checkItemStates",
    "closed",
    "dueComplete",
    "dateLastActivity",
    "desc",
    "descData",
    "due",
    "dueReminder",
    "email",
    "idBoard",
    "idChecklists",
    "idList",
    "idMembers",
    "idMembersVoted",
    "idShort",
    "idAttachmentCover",
    "labels",
    "idLabels",
    "manualCoverAttachment",
    "name",
    "pos",
    "shortLink",
    "shortUrl",
    "start",
    "subscribed",
    "url",
    "cover",
    "isTemplate",
    "cardRole",
]
LIST_FIELDS = [
    "name",
    "closed",
    "color",
    "idBoard",
    "pos",
    "subscribed",
    "softLimit",
    "type",
    "datasource",
]
MEMBER_FIELDS = [
    "activityBlocked",
    "avatarHash",
    "avatarUrl",
    "bio",
    "bioData",
    "confirmed",
    "fullName",
    "idEnterprise",
    "idMemberReferrer",
    "initials",
    "memberType",
    "nonPublic",
    "nonPublicAvailable",
    "products",
    "url",
    "username",
    "status",
]

Clock = Callable[[], datetime]


def _text(status: int, message: str) -> HttpError:
    return HttpError(Response(status, message.encode(), {"content-type": TEXT_TYPE}))


@dataclass
class _Member:
    id: str
    username: str
    full_name: str
    avatar_hash: str


@dataclass
class _List:
    id: str
    board: str
    name: str
    pos: float
    closed: bool = False


@dataclass
class _Card:
    id: str
    board: str
    list_id: str
    name: str
    desc: str
    short_link: str
    id_short: int
    pos: float
    last_activity: datetime
    members: list[str] = field(default_factory=list)
    closed: bool = False
    labels: list[str] = field(default_factory=list)  # label names
    attachments: list[dict[str, Any]] = field(default_factory=list)  # as the API shows them


@dataclass
class _Board:
    id: str
    name: str
    short_link: str
    organization: str
    background: str
    members: list[str] = field(default_factory=list)
    card_count: int = 0


@dataclass
class _Action:
    id: str
    seq: int
    type: str
    date: datetime
    board: str
    creator: str
    data: dict[str, Any]
    member: str | None = None  # the member added or removed


class _Limiter:
    """Requests per credential over a sliding window, as Trello counts them."""

    def __init__(self, limit: int, monotonic: Callable[[], float]) -> None:
        self.limit = limit
        self.monotonic = monotonic
        self._sent: dict[str, deque[float]] = {}

    def remaining(self, credential: str) -> int:
        sent = self._sent.setdefault(credential, deque())
        now = self.monotonic()
        while sent and sent[0] <= now - WINDOW:
            sent.popleft()
        return self.limit - len(sent)

    def take(self, credential: str) -> bool:
        if self.remaining(credential) <= 0:
            return False
        self._sent[credential].append(self.monotonic())
        return True


class TrelloEmulator(Emulator):
    service = "trello"
    prefix = "/1"
    server_name = "AtlassianEdge"

    def __init__(
        self,
        *,
        key: str = DEFAULT_KEY,
        token: str = DEFAULT_TOKEN,
        username: str = "syncdbot",
        clock: Clock | None = None,
        trace: TraceWriter | None = None,
        token_limit: int = 100,
        key_limit: int = 300,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(trace=trace)
        self.key = key
        self.token = token
        # Data timestamps come from here; a test may swap it for a fake at any time.
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self._random = random.Random(20240501)
        self._machine = self._random.getrandbits(40)
        self._counter = itertools.count(self._random.getrandbits(20))
        self._seq = itertools.count(1)
        self._members: dict[str, _Member] = {}
        self._boards: dict[str, _Board] = {}
        self._lists: dict[str, _List] = {}
        self._cards: dict[str, _Card] = {}
        self._actions: list[_Action] = []
        self._token_limit = _Limiter(token_limit, monotonic)
        self._key_limit = _Limiter(key_limit, monotonic)
        self.refused: list[str] = []  # error codes of the 429s the rate limits answered
        self._limit_lock = threading.Lock()
        self.me = self.add_member(username, "syncd bot")

        board, card = "/boards/{id}", "/cards/{id}"
        self.route("GET", board, self._get_board)
        self.route("GET", board + "/lists", self._get_lists)
        self.route("GET", board + "/cards", self._get_board_cards)
        self.route("GET", board + "/cards/{filter}", self._get_board_cards)
        self.route("GET", "/boards/{boardId}/actions", self._get_actions)
        self.route("GET", board + "/members", self._get_board_members)
        self.route("GET", card, self._get_card)
        self.route("GET", card + "/attachments", self._get_attachments)
        self.route("POST", card + "/idMembers", self._add_card_member)
        self.route("DELETE", card + "/idMembers/{idMember}", self._remove_card_member)
        self.route("GET", card + "/actions", self._get_card_actions)
        self.route("POST", card + "/actions/comments", self._post_comment)
        self.route("GET", "/members/{id}", self._get_member)

    # -- control API (tests, demo) -----------------------------------------------------
    def add_member(self, username: str, full_name: str | None = None) -> str:
        """A Trello account; returns its member id."""
        with self.lock:
            for m in self._members.values():
                if m.username == username:
                    return m.id
            member = _Member(
                self._mint(),
                username,
                full_name or username,
                f"{self._random.getrandbits(128):032x}",
            )
            self._members[member.id] = member
            return member.id

    def add_board(
        self,
        name: str,
        *,
        members: Iterable[str] = (),
        lists: Iterable[str] = ("To Do", "Doing", "Done"),
    ) -> str:
        """A board with these lists; `members` are usernames (added as members)."""
        with self.lock:
            board = _Board(self._mint(), name, self._short_link(), self._mint(), self._mint())
            board.members.append(self.me)
            self._boards[board.id] = board
            for username in members:
                self.add_board_member(board.id, username)
            for list_name in lists:
                self.add_list(board.id, list_name)
            return board.id

    def add_board_member(self, board: str, username: str) -> str:
        with self.lock:
            member = self.add_member(username)
            if member not in self._boards[board].members:
                self._boards[board].members.append(member)
            return member

    def remove_board_member(self, board: str, username: str) -> None:
        """As in Trello, someone who leaves a board leaves its cards too, with no card action."""
        with self.lock:
            member = self.member_id(username)
            self._boards[board].members.remove(member)
            for card in self._cards.values():
                if card.board == board and member in card.members:
                    card.members.remove(member)

    def add_list(self, board: str, name: str) -> str:
        with self.lock:
            pos = 16384.0 * (1 + sum(1 for x in self._lists.values() if x.board == board))
            lst = _List(self._mint(), board, name, pos)
            self._lists[lst.id] = lst
            return lst.id

    def archive_list(self, board: str, name: str) -> None:
        """Archive a list; its cards stay open, as in Trello."""
        with self.lock:
            self._list_named(board, name).closed = True

    def create_card(
        self,
        board: str,
        list_name: str,
        name: str,
        desc: str = "",
        *,
        members: Iterable[str] = (),
        by: str | None = None,
        labels: Iterable[str] = (),
    ) -> str:
        """A card, created as someone would in the web app; `members` are usernames,
        `labels` the names of the board's labels put on it."""
        with self.lock:
            b = self._boards[board]
            lst = self._list_named(board, list_name)
            b.card_count += 1
            now = self._now()
            card = _Card(
                self._mint(),
                board,
                lst.id,
                name,
                desc,
                self._short_link(),
                b.card_count,
                65536.0 * b.card_count,
                now,
                labels=list(dict.fromkeys(labels)),
            )
            self._cards[card.id] = card
            actor = self._actor(by)
            self._act("createCard", card, actor, {"list": self._list_ref(lst)})
            for username in members:
                self._add(card, self.member_id(username), actor)
            return card.id

    def attach(
        self, card_id: str, url: str, name: str | None = None, *, by: str | None = None
    ) -> str:
        """Attach a link to a card, as a person or a Power-Up (GitHub, Jira) does; Trello
        records an addAttachmentToCard action. Returns the attachment id."""
        with self.lock:
            card = self._card(card_id)
            actor = self._actor(by)
            attachment: dict[str, Any] = {
                "id": self._mint(),
                "bytes": None,
                "date": _stamp(self._now()),
                "edgeColor": None,
                "idMember": actor,
                "isUpload": False,
                "mimeType": "",
                "name": name or url,
                "previews": [],
                "url": url,
                "pos": 16384.0 * (len(card.attachments) + 1),
            }
            card.attachments.append(attachment)
            brief = {k: attachment[k] for k in ("id", "name", "url")}
            self._act("addAttachmentToCard", card, actor, {"attachment": brief})
            return str(attachment["id"])

    def set_members(self, card_id: str, usernames: Iterable[str], *, by: str | None = None) -> None:
        """Replace the card's members in one go, as picking them in the card's menu does."""
        with self.lock:
            card = self._card(card_id)
            wanted = [self.member_id(u) for u in usernames]
            actor = self._actor(by)
            for member in list(card.members):
                if member not in wanted:
                    self._remove(card, member, actor)
            for member in wanted:
                if member not in card.members:
                    self._add(card, member, actor)

    def comment(self, card_id: str, text: str, *, by: str | None = None) -> str:
        """`by` (a username) comments on the card; returns the commentCard action's id."""
        with self.lock:
            return self._comment(self._card(card_id), text, self._actor(by)).id

    def comments(self, card_id: str) -> list[str]:
        """The texts of the card's comments, oldest first."""
        with self.lock:
            return [
                str(a.data["text"])
                for a in self._actions
                if a.type == "commentCard" and a.data["card"]["id"] == card_id
            ]

    def move_card(self, card_id: str, list_name: str, *, by: str | None = None) -> None:
        with self.lock:
            card = self._card(card_id)
            lst = self._list_named(card.board, list_name)
            if lst.id == card.list_id:
                return
            before = self._lists[card.list_id]
            card.list_id = lst.id
            self._act(
                "updateCard",
                card,
                self._actor(by),
                {
                    "old": {"idList": before.id},
                    "listBefore": self._list_ref(before),
                    "listAfter": self._list_ref(lst),
                },
                card_extra={"idList": lst.id},
            )

    def archive_card(self, card_id: str, *, closed: bool = True, by: str | None = None) -> None:
        with self.lock:
            card = self._card(card_id)
            if card.closed == closed:
                return
            card.closed = closed
            self._act(
                "updateCard",
                card,
                self._actor(by),
                {"old": {"closed": not closed}, "list": self._list_ref(self._lists[card.list_id])},
                card_extra={"closed": closed},
            )

    def edit_card(
        self,
        card_id: str,
        *,
        name: str | None = None,
        desc: str | None = None,
        by: str | None = None,
    ) -> None:
        with self.lock:
            card = self._card(card_id)
            for attr, value in (("name", name), ("desc", desc)):
                if value is not None and value != getattr(card, attr):
                    old = getattr(card, attr)
                    setattr(card, attr, value)
                    self._act(
                        "updateCard",
                        card,
                        self._actor(by),
                        {"old": {attr: old}, "list": self._list_ref(self._lists[card.list_id])},
                        card_extra={attr: value},
                    )

    def move_card_to_board(
        self, card_id: str, board: str, list_name: str, *, by: str | None = None
    ) -> None:
        """Bring a card over from another board: only `moveCardToBoard` records it."""
        with self.lock:
            card = self._card(card_id)
            source = card.board
            card.board, card.list_id = board, self._list_named(board, list_name).id
            self._act(
                "moveCardToBoard",
                card,
                self._actor(by),
                {"boardSource": {"id": source, "name": self._boards[source].name}},
            )

    def delete_card(self, card_id: str) -> None:
        with self.lock:
            del self._cards[card_id]

    def card(self, card_id: str) -> dict[str, Any]:
        """The card as `GET /cards/{id}` shows it."""
        with self.lock:
            return self._card_json(self._card(card_id), CARD_FIELDS)

    def members_of(self, card_id: str) -> list[str]:
        """The usernames on a card, in Trello's order."""
        with self.lock:
            return [self._members[m].username for m in self._card(card_id).members]

    def member_id(self, username: str) -> str:
        with self.lock:
            for m in self._members.values():
                if m.username == username:
                    return m.id
            raise KeyError(f"no member {username!r} in the Trello emulator")

    def short_url(self, card_id: str) -> str:
        with self.lock:
            return f"https://trello.com/c/{self._card(card_id).short_link}"

    # -- request pipeline ---------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        key, token = request.arg("key"), request.arg("token")
        if key != self.key:
            return Response(401, b"invalid key", {"content-type": TEXT_TYPE})
        if token != self.token:
            return Response(401, b"invalid token", {"content-type": TEXT_TYPE})
        with self._limit_lock:
            refused = None
            if self._key_limit.remaining(key) <= 0:
                refused = "API_KEY_LIMIT_EXCEEDED"
            elif not self._token_limit.take(token):
                refused = "API_TOKEN_LIMIT_EXCEEDED"
            else:
                self._key_limit.take(key)
            headers = self._limit_headers(key, token)
        if refused is not None:
            self.refused.append(refused)
            body = {"error": refused, "message": "Rate limit exceeded"}
            return json_response(429, body, headers)
        try:
            response = self.dispatch(request)
        except HttpError as exc:
            response = exc.response
        response.headers.update(headers)
        return response

    def not_found(self, request: Request) -> Response:
        return Response(404, b"Cannot GET " + request.path.encode(), {"content-type": TEXT_TYPE})

    def _limit_headers(self, key: str, token: str) -> dict[str, str]:
        interval = str(int(WINDOW * 1000))
        return {
            "x-rate-limit-api-token-interval-ms": interval,
            "x-rate-limit-api-token-max": str(self._token_limit.limit),
            "x-rate-limit-api-token-remaining": str(max(0, self._token_limit.remaining(token))),
            "x-rate-limit-api-key-interval-ms": interval,
            "x-rate-limit-api-key-max": str(self._key_limit.limit),
            "x-rate-limit-api-key-remaining": str(max(0, self._key_limit.remaining(key))),
        }

    # -- endpoints ----------------------------------------------------------------------
    def _get_board(self, request: Request) -> Response:
        board = self._board_of(request)
        return json_response(200, self._board_json(board, _fields(request, BOARD_FIELDS)))

    def _get_lists(self, request: Request) -> Response:
        board = self._board_of(request)
        wanted = request.arg("filter", "open")
        if wanted not in ("all", "open", "closed", "none"):
            raise _text(400, "invalid value for filter")
        fields = _fields(request, LIST_FIELDS)
        lists = sorted((x for x in self._lists.values() if x.board == board.id), key=_pos)
        chosen = [
            x
            for x in lists
            if wanted == "all"
            or (wanted == "open" and not x.closed)
            or (wanted == "closed" and x.closed)
        ]
        return json_response(200, [self._list_json(x, fields) for x in chosen])

    def _get_board_cards(self, request: Request) -> Response:
        board = self._board_of(request)
        wanted = request.params.get("filter") or request.arg("filter") or "visible"
        if wanted not in ("all", "closed", "none", "open", "visible"):
            raise _text(400, "invalid value for filter")
        fields = _fields(request, CARD_FIELDS)
        cards = sorted(
            (c for c in self._cards.values() if c.board == board.id),
            key=lambda c: (self._lists[c.list_id].pos, c.pos),
        )
        chosen = [
            c
            for c in cards
            if wanted == "all"
            or (wanted == "closed" and c.closed)
            or (wanted == "open" and not c.closed)
            or (wanted == "visible" and not c.closed and not self._lists[c.list_id].closed)
        ]
        return json_response(200, [self._card_json(c, fields) for c in chosen])

    def _get_actions(self, request: Request) -> Response:
        board_id = request.params["boardId"]
        if board_id not in self._boards:
            raise self._missing_or_invalid(board_id)
        types = {t.strip() for t in (request.arg("filter") or "all").split(",")}
        try:
            limit = int(request.arg("limit") or 50)
        except ValueError:
            raise _text(400, "invalid value for limit") from None
        if not 0 <= limit <= ACTIONS_MAX:
            raise _text(400, "invalid value for limit")
        since = self._position(request.arg("since"))
        before = self._position(request.arg("before"))
        chosen = [
            a
            for a in reversed(self._actions)
            if a.board == board_id
            and ("all" in types or a.type in types)
            and (since is None or _after(a, since))
            and (before is None or _after(before, a))
        ][:limit]
        with_member = request.arg("member", "true") != "false"
        with_creator = request.arg("memberCreator", "true") != "false"
        return json_response(200, [self._action_json(a, with_member, with_creator) for a in chosen])

    def _get_board_members(self, request: Request) -> Response:
        board = self._board_of(request)
        fields = _fields(request, ["fullName", "username"])
        return json_response(
            200, [self._member_json(self._members[m], fields) for m in board.members]
        )

    def _get_card(self, request: Request) -> Response:
        card = self._card_of(request)
        return json_response(200, self._card_json(card, _fields(request, CARD_FIELDS)))

    def _get_attachments(self, request: Request) -> Response:
        card = self._card_of(request)
        chosen = card.attachments
        if request.arg("filter") == "cover":
            chosen = []  # link attachments are never a card's cover here
        everything = list(chosen[0]) if chosen else []
        fields = _fields(request, everything)
        return json_response(
            200, [{"id": a["id"], **{f: a[f] for f in fields if f in a}} for a in chosen]
        )

    def _add_card_member(self, request: Request) -> Response:
        card = self._card_of(request)
        member = request.arg("value") or ""
        if member not in self._members:
            raise _text(400, "invalid value for value")
        if member not in self._boards[card.board].members:
            raise _text(401, "unauthorized member permission requested")
        if member in card.members:
            raise _text(400, "member is already on the card")
        self._add(card, member, self.me)
        return json_response(200, [self._member_json(self._members[m]) for m in card.members])

    def _remove_card_member(self, request: Request) -> Response:
        card = self._card_of(request)
        member = request.params["idMember"]
        if member not in card.members:
            raise _text(400, "member is not on the card")
        self._remove(card, member, self.me)
        return json_response(200, [self._member_json(self._members[m]) for m in card.members])

    def _get_card_actions(self, request: Request) -> Response:
        card = self._card_of(request)
        types = {t.strip() for t in (request.arg("filter") or "commentCard").split(",")}
        chosen = [
            a
            for a in reversed(self._actions)
            if a.data.get("card", {}).get("id") == card.id and ("all" in types or a.type in types)
        ][:50]
        return json_response(200, [self._action_json(a, True, True) for a in chosen])

    def _post_comment(self, request: Request) -> Response:
        card = self._card_of(request)
        text = request.arg("text") or ""
        if not text.strip():
            raise _text(400, "invalid value for text")
        action = self._comment(card, text, self.me)
        return json_response(200, self._action_json(action, True, True))

    def _comment(self, card: _Card, text: str, actor: str) -> _Action:
        self._act("commentCard", card, actor, {"text": text})
        return self._actions[-1]

    def _get_member(self, request: Request) -> Response:
        ref = request.params["id"]
        member = self._members.get(self.me if ref == "me" else ref) or next(
            (m for m in self._members.values() if m.username == ref), None
        )
        if member is None:
            raise _text(404, "The requested resource was not found.")
        return json_response(200, self._member_json(member, _fields(request, MEMBER_FIELDS)))

    # -- state helpers (callers hold the lock) ------------------------------------------
    def _now(self) -> datetime:
        now = self.clock().astimezone(UTC)
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    def _label_id(self, board: str, name: str) -> str:
        # Stable per board and name, shaped like every other Trello id.
        return hashlib.blake2b(f"{board}/{name}".encode(), digest_size=12).hexdigest()

    def _label_json(self, board: str, name: str) -> dict[str, Any]:
        return {"id": self._label_id(board, name), "idBoard": board, "name": name, "color": "sky"}

    def _mint(self) -> str:
        # Like a Mongo ObjectId, as Trello's are: 4 bytes of seconds, 5 random, 3 of counter.
        seconds = int(self.clock().timestamp())
        return f"{seconds:08x}{self._machine:010x}{next(self._counter) % 16**6:06x}"

    def _short_link(self) -> str:
        return "".join(self._random.choices(string.ascii_letters + string.digits, k=8))

    def _actor(self, username: str | None) -> str:
        return self.member_id(username) if username is not None else self.me

    def _card(self, card_id: str) -> _Card:
        card = self._cards.get(card_id)
        if card is None:
            raise KeyError(f"no card {card_id} in the Trello emulator")
        return card

    def _list_named(self, board: str, name: str) -> _List:
        for lst in self._lists.values():
            if lst.board == board and lst.name == name:
                return lst
        raise KeyError(f"no list {name!r} on board {board}")

    def _list_ref(self, lst: _List) -> dict[str, str]:
        return {"id": lst.id, "name": lst.name}

    def _missing_or_invalid(self, ref: str) -> HttpError:
        if len(ref) != 24 or any(c not in string.hexdigits for c in ref):
            return _text(400, "invalid id")
        return _text(404, "The requested resource was not found.")

    def _board_of(self, request: Request) -> _Board:
        board = self._boards.get(request.params["id"])
        if board is None:
            raise self._missing_or_invalid(request.params["id"])
        return board

    def _card_of(self, request: Request) -> _Card:
        card = self._cards.get(request.params["id"])
        if card is None:
            raise self._missing_or_invalid(request.params["id"])
        return card

    def _position(self, value: str | None) -> _Action | datetime | None:
        if value is None or value == "null":
            return None
        for action in self._actions:
            if action.id == value:
                return action
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise _text(400, "invalid date") from None
        return when if when.tzinfo else when.replace(tzinfo=UTC)

    def _add(self, card: _Card, member: str, actor: str) -> None:
        card.members.append(member)
        self._act("addMemberToCard", card, actor, {"idMember": member}, member=member)

    def _remove(self, card: _Card, member: str, actor: str) -> None:
        card.members.remove(member)
        self._act(
            "removeMemberFromCard",
            card,
            actor,
            {"idMember": member, "deactivated": False},
            member=member,
        )

    def _act(
        self,
        kind: str,
        card: _Card,
        actor: str,
        data: dict[str, Any],
        *,
        member: str | None = None,
        card_extra: dict[str, Any] | None = None,
    ) -> None:
        now = self._now()
        card.last_activity = now
        board = self._boards[card.board]
        card_ref = {
            **(card_extra or {}),
            "id": card.id,
            "name": card.name,
            "idShort": card.id_short,
            "shortLink": card.short_link,
        }
        full = {
            **data,
            "card": card_ref,
            "board": {"id": board.id, "name": board.name, "shortLink": board.short_link},
        }
        action = _Action(self._mint(), next(self._seq), kind, now, card.board, actor, full, member)
        self._actions.append(action)

    # -- JSON shapes --------------------------------------------------------------------
    def _board_json(self, board: _Board, fields: list[str]) -> dict[str, Any]:
        url = f"https://trello.com/b/{board.short_link}/{_slug(board.name)}"
        values: dict[str, Any] = {
            "name": board.name,
            "desc": "",
            "descData": None,
            "closed": False,
            "idOrganization": board.organization,
            "pinned": False,
            "url": url,
            "shortUrl": f"https://trello.com/b/{board.short_link}",
            "prefs": {
                "permissionLevel": "org",
                "hideVotes": False,
                "voting": "disabled",
                "comments": "members",
                "invitations": "members",
                "selfJoin": True,
                "cardCovers": True,
                "isTemplate": False,
                "cardAging": "regular",
                "calendarFeedEnabled": False,
                "background": board.background,
                "backgroundTile": False,
                "backgroundBrightness": "dark",
                "canBePublic": True,
                "canBeEnterprise": True,
                "canBeOrg": True,
                "canBePrivate": True,
                "canInvite": True,
            },
            "labelNames": dict.fromkeys(
                (
                    "green",
                    "yellow",
                    "orange",
                    "red",
                    "purple",
                    "blue",
                    "sky",
                    "lime",
                    "pink",
                    "black",
                ),
                "",
            ),
            "shortLink": board.short_link,
        }
        return {"id": board.id, **{f: values[f] for f in fields if f in values}}

    def _list_json(self, lst: _List, fields: list[str]) -> dict[str, Any]:
        values: dict[str, Any] = {
            "name": lst.name,
            "closed": lst.closed,
            "color": None,
            "idBoard": lst.board,
            "pos": lst.pos,
            "subscribed": False,
            "softLimit": None,
            "type": None,
            "datasource": {"filter": False},
        }
        return {"id": lst.id, **{f: values[f] for f in fields if f in values}}

    def _card_json(self, card: _Card, fields: list[str]) -> dict[str, Any]:
        url = f"https://trello.com/c/{card.short_link}/{card.id_short}-{_slug(card.name)}"
        values: dict[str, Any] = {
            "badges": {
                "attachmentsByType": {
                    "trello": {
                        "board": sum("trello.com/b/" in a["url"] for a in card.attachments),
                        "card": sum("trello.com/c/" in a["url"] for a in card.attachments),
                    }
                },
                "location": False,
                "votes": 0,
                "viewingMemberVoted": False,
                "subscribed": False,
                "fogbugz": "",
                "checkItems": 0,
                "checkItemsChecked": 0,
                "checkItemsEarliestDue": None,
                "comments": 0,
                "attachments": len(card.attachments),
                "description": bool(card.desc),
                "due": None,
                "dueComplete": False,
                "start": None,
            },
            "checkItemStates": [],
            "closed": card.closed,
            "dueComplete": False,
            "dateLastActivity": _stamp(card.last_activity),
            "desc": card.desc,
            "descData": {"emoji": {}},
            "due": None,
            "dueReminder": None,
            "email": None,
            "idBoard": card.board,
            "idChecklists": [],
            "idList": card.list_id,
            "idMembers": list(card.members),
            "idMembersVoted": [],
            "idShort": card.id_short,
            "idAttachmentCover": None,
            "labels": [self._label_json(card.board, name) for name in card.labels],
            "idLabels": [self._label_id(card.board, name) for name in card.labels],
            "manualCoverAttachment": False,
            "name": card.name,
            "pos": card.pos,
            "shortLink": card.short_link,
            "shortUrl": f"https://trello.com/c/{card.short_link}",
            "start": None,
            "subscribed": False,
            "url": url,
            "cover": {
                "idAttachment": None,
                "color": None,
                "idUploadedBackground": None,
                "size": "normal",
                "brightness": "dark",
                "isTemplate": False,
            },
            "isTemplate": False,
            "cardRole": None,
        }
        return {"id": card.id, **{f: values[f] for f in fields if f in values}}

    def _member_json(self, member: _Member, fields: list[str] | None = None) -> dict[str, Any]:
        avatar = f"https://trello-members.s3.amazonaws.com/{member.id}/{member.avatar_hash}"
        values: dict[str, Any] = {
            "activityBlocked": False,
            "avatarHash": member.avatar_hash,
            "avatarUrl": avatar,
            "bio": "",
            "bioData": {"emoji": {}},
            "confirmed": True,
            "fullName": member.full_name,
            "idMemberReferrer": None,
            "initials": "".join(w[0] for w in member.full_name.split()[:2]).upper(),
            "memberType": "normal",
            "nonPublic": {},
            "nonPublicAvailable": True,
            "products": [],
            "url": f"https://trello.com/{member.username}",
            "username": member.username,
            "status": "disconnected",
        }
        chosen = fields if fields is not None else ["fullName", "username"]
        return {"id": member.id, **{f: values[f] for f in chosen if f in values}}

    def _action_json(
        self, action: _Action, with_member: bool, with_creator: bool
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": action.id,
            "idMemberCreator": action.creator,
            "data": action.data,
            "appCreator": None,
            "type": action.type,
            "date": _stamp(action.date),
            # Comments carry their reaction limits; other actions have none.
            "limits": _COMMENT_LIMITS if action.type == "commentCard" else None,
        }
        brief = ["activityBlocked", "avatarHash", "avatarUrl", "fullName", "idMemberReferrer",
                 "initials", "nonPublic", "nonPublicAvailable", "username"]  # fmt: skip
        if with_creator:
            data["memberCreator"] = self._member_json(self._members[action.creator], brief)
        if with_member and action.member is not None:
            data["member"] = self._member_json(self._members[action.member], brief)
        return data


_COMMENT_LIMITS = {
    "reactions": {
        "perAction": {"status": "ok", "disableAt": 900, "warnAt": 720},
        "uniquePerAction": {"status": "ok", "disableAt": 17, "warnAt": 14},
    }
}


def _fields(request: Request, everything: list[str]) -> list[str]:
    value = request.arg("fields")
    if value is None or value == "all":
        return everything
    return [f.strip() for f in value.split(",") if f.strip()]


def _after(a: _Action | datetime, b: _Action | datetime) -> bool:
    """Whether `a` comes after `b`: actions by creation order, dates by time."""
    if isinstance(a, _Action) and isinstance(b, _Action):
        return a.seq > b.seq
    at = a.date if isinstance(a, _Action) else a
    bt = b.date if isinstance(b, _Action) else b
    return at > bt


def _pos(lst: _List) -> float:
    return lst.pos


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _slug(name: str) -> str:
    words = "".join(c.lower() if c.isalnum() else " " for c in name).split()
    return "-".join(words)[:60] or "card"
