"""Trello: one or more boards per source. A card is an item; its members are its owners.

Reading. Each board is read from its action feed::

    GET /boards/{id}/actions?filter=addMemberToCard,removeMemberFromCard,updateCard,createCard
                            &since=<last action id>&limit=1000&memberCreator_fields=username

(with ``commentCard`` added to the filter when the source reads comments). Each action's
``memberCreator`` says who did it: the actor of an owner change, the author of a comment.

Actions name the cards that changed (member changes, list moves, archiving, renames) and
carry exact times; the cards themselves are then read with only the fields used: one
``GET /cards/{id}`` each when a few changed, or the board's open cards in one request when
more did. A board with no new action costs that one request: a no-change cycle costs one
request per board. Each board's changes are one Page, applied with the cursor.

The feed misses some changes (a card moved in from another board arrives as
``moveCardToBoard``, a member removed from the board leaves its cards without a card action,
and a burst of more than 1000 actions overflows one answer), so every ``sweep_every``
(default one hour) a board is swept as well: its lists, its members and all its open cards
are read again (three requests more) and every open card is yielded; the ledger takes the
unchanged ones as no change. The first pull of a board is a sweep. Archived cards are not
swept: archiving is an ``updateCard`` action, and an old board's archive can be huge.

Cursor (owned here; the core stores it as JSON and hands it back)::

    {"boards": {"<board id>": {"since": "<newest action id read>",
                               "swept": "2024-05-01T12:00:00Z",
                               "quarantined": {"<card id>": "<fingerprint>"}}}}

``since`` is an action id, so the next read starts exactly after the last action read.
``quarantined`` remembers cards that could not be read, so an unchanged bad card is
reported once rather than at every sweep.

State. Trello has no status: a card's list names it, through the config's ``states`` table
(list name, any case -> state) over these defaults: "To Do", "Todo", "Backlog" -> open;
"Doing", "In Progress" -> in_progress; "Blocked" -> blocked; "Done" -> done. A list with
another name is open. Archived cards are ``archived`` (done, or cancelled). List names come
from ``GET /boards/{id}/lists``, cached and read again at each sweep or when a card names a
list not seen yet.

Owners and identity. A card's members are its owners, in Trello's order. A ``trello`` handle
under [[people]] is the member's username (what people see on their profile, and the simple
choice) or their 24-hex member id (which survives a change of username). Handles come out as
the member id when a person is configured by id, otherwise as the username, so an unclaimed
member shows up as ``trello:<username>`` in ``syncd people``. Usernames are read from
``GET /boards/{id}/members``, cached.

Several members: as in the core, the current owner stays owner while still a member (adding
a helper is not a handoff); otherwise the first member is. A write-back adds the new owner
(``POST /cards/{id}/idMembers?value=<member id>``) before removing the previous one
(``DELETE /cards/{id}/idMembers/{member id}``), and leaves other members alone; then the card
is read back.

Rate limits. Trello allows 100 requests per 10 s per token and 300 per API key, and says
nothing before refusing, so requests wait before they are sent: at most 95 per token and 285
per key in any 10 s (5 % under the limits, for clock and network jitter), counted across
every source in the process that uses the same token or key. A 429 anyway
(``API_TOKEN_LIMIT_EXCEEDED``, ``API_KEY_LIMIT_EXCEEDED``) waits out the 10 s window, or the
Retry-After if one is given.

Secrets. The key and token travel as query parameters; every URL that reaches a log line,
trace or error goes through syncd.redact, which scrubs both by name and by value.

Cross-references come from the card's name and description (syncd.crossref tells what they
declare from what they mention) and from its attachments: a GitHub issue or Jira URL attached
(as the Power-Ups do) declares the same work, another card's URL is a relation. Attachments
are read (``GET /cards/{id}/attachments``) only for a card that has any, by its
``badges.attachments``, and that the feed named or whose count changed since the last read;
an attachment added is an ``addAttachmentToCard`` action in the feed. A card's own keys
include ``trello:<shortLink>``, so Trello card URLs written in other tools name it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, field_validator

from syncd import commands
from syncd.adapters.base import (
    Adapter,
    MemoryStore,
    StateStore,
    Unreadable,
    api_root,
    evidence,
    owner_entries,
    timestamp,
    typed,
)
from syncd.adapters.trello_feed import (
    ACTION_TYPES,
    ACTIONS_LIMIT,
    COMMENT,
    ID,
    Action,
    Mark,
    changed_cards,
    cursor_of,
    owner_times,
    read_action,
    resume,
    sweep_due,
)
from syncd.config import CommentSettings, Duration, SecretRef, SecretsUnreadable
from syncd.crossref import References, item_key, read_references, with_links
from syncd.errors import ConfigError, FatalError, MalformedResponse
from syncd.http import ApiClient, HttpOptions, header_int, parse_retry_after
from syncd.models import (
    Activity,
    Comment,
    Cursor,
    Handoff,
    Observation,
    Page,
    Quarantined,
    RateBudget,
    State,
)
from syncd.notes import plain_text
from syncd.people import Directory
from syncd.throttle import SlidingWindow, ThrottledTransport, shared_window

_SHORT_LINK = re.compile(r"^[A-Za-z0-9]{8,12}$")

CARD_FIELDS = (
    "name,desc,idList,idMembers,closed,dateLastActivity,shortLink,url,idBoard,labels,badges"
)
ATTACHMENT_FIELDS = "url,name"
_MAX_ATTACHMENTS = 200  # attachments of one card read
# Up to this many changed cards are read one by one; more, and the board's open cards are
# read in one request instead.
_PER_CARD = 5
TOKEN_LIMIT = 95  # requests per WINDOW per token (Trello: 100)
KEY_LIMIT = 285  # requests per WINDOW per API key (Trello: 300)
WINDOW = 10.0
_MAX_TITLE = 1024
_MAX_MEMBERS = 100
_MAX_LABELS = 100  # labels kept per card (routing rules test them)
# Quarantined cards remembered per board; past this, more are reported again at each sweep.
_MAX_BAD = 500

DEFAULT_LISTS: dict[str, State] = {
    "to do": "open",
    "todo": "open",
    "backlog": "open",
    "doing": "in_progress",
    "in progress": "in_progress",
    "blocked": "blocked",
    "done": "done",
}


class TrelloConfig(CommentSettings):
    type: Literal["trello"]
    boards: list[str] = Field(min_length=1, description="board ids, 24 hex digits each")
    base_url: str = "https://api.trello.com/1"
    key: SecretRef
    token: SecretRef
    sweep_every: Duration = timedelta(hours=1)
    archived: Literal["done", "cancelled"] = "done"

    @field_validator("boards")
    @classmethod
    def _board_ids(cls, v: list[str]) -> list[str]:
        ids = [b.strip().lower() for b in v]
        bad = [b for b, i in zip(v, ids, strict=True) if not ID.match(i)]
        if bad:
            raise ValueError(
                f"not a board id: {', '.join(map(repr, bad))}; open "
                'https://trello.com/b/<shortLink>.json and copy its 24-hex-digit "id"'
            )
        if len(set(ids)) != len(ids):
            raise ValueError("lists a board twice")
        return ids

    @field_validator("base_url")
    @classmethod
    def _base_url_shape(cls, v: str) -> str:
        return api_root(
            v, shape="an http(s) URL such as https://api.trello.com/1", plain="a plain API root"
        )


def _rate_limit_wait(response: httpx.Response) -> float | None:
    """Seconds to wait after a Trello 429: Retry-After if given, else the whole window."""
    if response.status_code != 429:
        return None
    wait = parse_retry_after(response.headers.get("retry-after"))
    if wait is not None:
        return wait
    body = response.text[:500]
    if "API_TOKEN_LIMIT_EXCEEDED" in body or "API_KEY_LIMIT_EXCEEDED" in body:
        return WINDOW
    return None


class TrelloAdapter(Adapter[TrelloConfig]):
    kind = "trello"
    Config = TrelloConfig
    comments = True
    default_states: ClassVar[dict[str, State]] = DEFAULT_LISTS

    def __init__(
        self,
        config: TrelloConfig,
        http: HttpOptions | None = None,
        *,
        windows: Sequence[SlidingWindow] | None = None,
    ) -> None:
        super().__init__(config, http)
        try:
            key, token = config.secret("key"), config.secret("token")
        except KeyError:
            # Loaded with resolve=False (as `syncd config check` may do): read them now.
            try:
                config.resolve_secrets()
            except SecretsUnreadable as exc:
                raise ConfigError(f"source {config.name}", exc.problems) from None
            key, token = config.secret("key"), config.secret("token")
        # The feed's clock, for sweeps; tests replace it.
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        if windows is None:
            windows = (
                shared_window("trello-token", token, TOKEN_LIMIT, WINDOW),
                shared_window("trello-key", key, KEY_LIMIT, WINDOW),
            )
        self.windows = tuple(windows)  # what every request waits on before it is sent
        inner = self.http.transport or httpx.HTTPTransport()
        self.client = ApiClient(
            service="trello",
            source=config.name,
            base_url=config.base_url,
            headers={"Accept": "application/json"},
            params={"key": key, "token": token},
            options=replace(self.http, transport=ThrottledTransport(inner, self.windows)),
            wait_rule=_rate_limit_wait,
        )
        self._lists: dict[str, str] = {}  # list id -> name
        self._usernames: dict[str, str] = {}  # member id -> username
        self._member_ids: dict[str, str] = {}  # username (lower-case) -> member id
        self._claimed: frozenset[str] = frozenset()  # handles people are configured with
        self._me: str | None = None  # syncd's own member id (GET members/me), read when needed
        self._board_members: dict[str, frozenset[str]] = {}  # board -> member ids, last read
        # What read_owners last saw of a card (board, member ids): the outbox reads the
        # owners just before writing, so the write need not read them again.
        self._last_read: dict[str, tuple[str, tuple[str, ...]]] = {}
        # What each card's attachments linked when last read ("attach:<card id>" -> JSON
        # {"n": count, "keys": [...]}), kept in the ledger with each page, so a restart reads
        # no attachment again; in memory when run without a ledger.
        self._own_store: MemoryStore | None = MemoryStore()
        self._store: StateStore = self._own_store

    def bind_store(self, store: StateStore) -> None:
        self._store, self._own_store = store, None

    def bind_people(self, directory: Directory) -> None:
        self._claimed = frozenset(
            h.lower() for p in directory.people.values() for h in p.handles_for(self.kind)
        )

    # -- reading ------------------------------------------------------------------------

    def pull(self, cursor: Cursor | None) -> Iterator[Page]:
        marks = resume(cursor, self.config.boards)
        now = self.clock()
        for board in self.config.boards:
            page = self._pull_board(board, marks, now)
            if page is not None:
                yield page

    def _pull_board(self, board: str, marks: dict[str, Mark], now: datetime) -> Page | None:
        mark = marks[board]
        raw_actions = self._actions(board, mark.since)
        actions = [
            a
            for a in map(self._learn_and_read, raw_actions)
            if a is not None and a.id != mark.since
        ]
        sweep = sweep_due(
            mark, now, self.config.sweep_every, overflowed=len(raw_actions) >= ACTIONS_LIMIT
        )
        if not actions and not sweep:
            return None
        changed = changed_cards(actions)
        if sweep:
            self._refresh_lists(board)
            self._refresh_members(board)
            cards = self._board_cards(board)
        elif len(changed) > _PER_CARD:
            wanted = set(changed)
            cards = [c for c in self._board_cards(board) if _raw_id(c) in wanted]
        else:
            cards = []
        found = {_raw_id(c) for c in cards}
        # Cards the feed named that the listing did not hold: archived, or read one by one.
        for card_id in changed:
            if card_id not in found:
                card = self._card_or_none(card_id)
                if card is not None:
                    cards.append(card)
        bad = dict(mark.bad)
        # Comments since the last read only: the first read of a board is history.
        said = self._activity(board, actions) if mark.since is not None else {}
        page = self._read_cards(
            board, cards, owner_times(actions), bad, refreshed=sweep, changed=frozenset(changed)
        )
        page.observations = [
            replace(o, activity=said[o.ref]) if o.ref in said else o for o in page.observations
        ]
        newest = max(actions, key=lambda a: (a.date, a.id)).id if actions else mark.since
        marks[board] = Mark(newest, now if sweep else mark.swept, bad)
        page.cursor = cursor_of(marks)
        return page

    def _learn_and_read(self, raw: object) -> Action | None:
        # Actions carry the usernames of the member and of who acted: learning them here
        # saves a members read, and names the actor of an owner change.
        for name in ("member", "memberCreator"):
            member = raw.get(name) if isinstance(raw, dict) else None
            if isinstance(member, dict):
                self._learn_member(member)
        return read_action(raw, self._types)

    @property
    def _types(self) -> tuple[str, ...]:
        return (*ACTION_TYPES, COMMENT) if self.config.wants_comments else ACTION_TYPES

    def _activity(self, board: str, actions: Sequence[Action]) -> dict[str, tuple[Activity, ...]]:
        """What people did, by card, oldest first: comments, member changes, list moves and
        archiving (state), other edits; all from the feed already read."""
        said: dict[str, list[Activity]] = {}
        # A public board may let anyone comment: only the board's members may give commands.
        # Who is a member is read again (one request) when a comment holds a command, as a
        # member removed since the last read must not command the board.
        if any(a.type == COMMENT and commands.parse(a.text) is not None for a in actions):
            self._refresh_members(board)
        members = self._board_members.get(board, frozenset())
        for a in sorted(actions, key=lambda a: (a.date, a.id)):
            if a.kind is not None and a.creator is not None:
                said.setdefault(a.card, []).append(
                    Activity(
                        actor=self._handle(a.creator),
                        at=a.date,
                        kind=a.kind,
                        id=a.id,
                        text=a.text,
                        # Commands still come only from people mapped in the config.
                        trusted=a.kind == "comment" and a.creator in members,
                        by_syncd=a.by_syncd,
                    )
                )
        return {card: tuple(acts) for card, acts in said.items()}

    def _read_cards(
        self,
        board: str,
        cards: list[Any],
        times: dict[str, tuple[datetime, str | None]],
        bad: dict[str, str],
        *,
        refreshed: bool,
        changed: frozenset[str] = frozenset(),
    ) -> Page:
        """Observe `cards`; `bad` (card id -> fingerprint of quarantined cards) is updated.
        `changed` are the cards the action feed named: their attachments are read again."""
        page = Page()
        read = self._store.get(f"attach:{_raw_id(raw)}" for raw in cards)
        for raw in cards:
            try:
                if not refreshed and self._needs_refresh(raw):
                    # One refresh per board and pull covers every card that needs it.
                    self._refresh_lists(board)
                    self._refresh_members(board)
                    refreshed = True
                obs = self._observe(raw, board)
                if obs is not None:
                    obs = self._with_attachments(obs, raw, obs.ref in changed, read, page)
            except Unreadable as exc:
                card_id = raw.get("id") if isinstance(raw, dict) else None
                ref = card_id if isinstance(card_id, str) and ID.match(card_id) else None
                quarantined = Quarantined(self.name, ref, exc.reason, evidence(raw))
                if ref is None:
                    page.quarantined.append(quarantined)
                    continue
                fingerprint = hashlib.blake2b(quarantined.payload.encode(), digest_size=8)
                if bad.get(ref) != fingerprint.hexdigest():
                    page.quarantined.append(quarantined)
                if ref in bad or len(bad) < _MAX_BAD:
                    bad[ref] = fingerprint.hexdigest()
                continue
            if obs is not None:
                bad.pop(obs.ref, None)
                at, actor = times.get(obs.ref, (None, None))
                page.observations.append(
                    replace(
                        obs,
                        owner_changed_at=at,
                        owner_actor=self._handle(actor) if actor is not None else None,
                    )
                )
        page.observations.sort(key=lambda o: o.updated_at)
        if self._own_store is not None:  # no ledger: remember in memory
            self._own_store.apply(page.state)
        return page

    def _with_attachments(
        self, obs: Observation, raw: dict[str, Any], changed: bool, read: dict[str, str], page: Page
    ) -> Observation:
        """`obs` with what its attachments link: a GitHub issue or Jira issue URL (what the
        Power-Ups attach) declares the same work; another Trello card is a relation.

        Attachments cost a request per card, so they are read only for a card that has any
        (its `badges.attachments`) and that changed (the feed named it), or whose count
        differs from the last read; otherwise what was read last is used again."""
        count = _attachment_count(raw)
        entry = f"attach:{obs.ref}"
        cached = _read_attached(read.get(entry))
        if count == 0:
            if entry in read:
                page.state[entry] = None
            return obs
        if cached is not None and not changed and cached[0] == count:
            keys = cached[1]
        else:
            keys = self._attachment_keys(obs.ref)
            page.state[entry] = json.dumps({"n": count, "keys": list(keys)})
        declared = [k for k in keys if not k.startswith("trello:")]
        related = [(k, "related") for k in keys if k.startswith("trello:")]
        mine = References(obs.declared, obs.mentions, obs.relation_kinds)
        refs = with_links(mine, declared, related, own=obs.keys)
        return replace(
            obs, declared=refs.declared, mentions=refs.mentions, relation_kinds=refs.relation_kinds
        )

    def _attachment_keys(self, card_id: str) -> tuple[str, ...]:
        try:
            data = self._get(f"cards/{card_id}/attachments", {"fields": ATTACHMENT_FIELDS})
        except FatalError:
            last = self.client.last_response
            if last is not None and last.status_code == 404:
                return ()  # deleted since it was listed
            raise
        if not isinstance(data, list):
            raise Unreadable(f"its attachments answer is a JSON {type(data).__name__}, not a list")
        keys = (
            item_key(a["url"])
            for a in data[:_MAX_ATTACHMENTS]
            if isinstance(a, dict) and isinstance(a.get("url"), str)
        )
        return tuple(dict.fromkeys(k for k in keys if k is not None))

    def _needs_refresh(self, raw: object) -> bool:
        if not isinstance(raw, dict):
            return False
        members = raw.get("idMembers")
        unknown_member = isinstance(members, list) and any(
            isinstance(m, str) and m not in self._usernames and m not in self._claimed
            for m in members
        )
        return unknown_member or raw.get("idList") not in self._lists

    def _observe(self, raw: object, board: str) -> Observation | None:
        """One card as an Observation; None for a card that has left the board."""
        if not isinstance(raw, dict):
            raise Unreadable(f"a card is a JSON {type(raw).__name__}, not an object")
        card_id = raw.get("id")
        if not isinstance(card_id, str) or not ID.match(card_id):
            raise Unreadable("id is missing or not a Trello id")
        if raw.get("idBoard") != board:
            # Moved to another board: out of this source's scope. Its absence closes
            # nothing; if that board is configured too, it is read there.
            return None
        updated_at = timestamp(raw.get("dateLastActivity"), "dateLastActivity")
        name, desc = typed(raw, "name", str), raw.get("desc")
        if desc is not None and not isinstance(desc, str):
            raise Unreadable("desc is not a string")
        short_link, url = raw.get("shortLink"), raw.get("url")
        if not isinstance(short_link, str) or not _SHORT_LINK.match(short_link):
            raise Unreadable("shortLink is missing or malformed")
        if not isinstance(url, str) or len(url) > 2048 or not url.startswith("https://"):
            raise Unreadable("url is missing or not an https URL")
        closed = typed(raw, "closed", bool)
        list_id = typed(raw, "idList", str)
        if not ID.match(list_id):
            raise Unreadable("idList is not a Trello id")
        entries = owner_entries(raw, "idMembers")
        if len(entries) > _MAX_MEMBERS:
            raise Unreadable(f"idMembers has {len(entries)} entries, more than a card holds")
        members = [m for m in entries if isinstance(m, str) and ID.match(m)]
        if len(members) != len(entries):
            raise Unreadable("idMembers holds something that is not a member id")
        # Read after the board's members were refreshed for this card: an id still unknown
        # names nobody syncd can tell apart, so it is no owner to hand the request to.
        unknown = [m for m in members if m not in self._usernames and m not in self._claimed]
        if unknown:
            raise Unreadable(f"idMembers holds {unknown[0]}, who is not a member of the board")
        state: State = (
            self.config.archived
            if closed
            else self.map_state(self._lists.get(list_id, "").strip(), fallback="open")
        )
        keys = (f"trello:{short_link}",)
        refs = read_references(name, desc, self.rules, own=keys)
        return Observation(
            source=self.name,
            ref=card_id,
            url=url,
            title=name[:_MAX_TITLE],
            state=state,
            owners=tuple(self._handle(m) for m in members),
            updated_at=updated_at,
            keys=keys,
            mentions=refs.mentions,
            declared=refs.declared,
            relation_kinds=refs.relation_kinds,
            labels=_label_names(raw.get("labels")),
        )

    def _handle(self, member_id: str) -> str:
        if member_id in self._claimed:
            return member_id
        return self._usernames.get(member_id, member_id)

    # -- requests -----------------------------------------------------------------------

    def _actions(self, board: str, since: str | None) -> list[Any]:
        params = {
            "filter": ",".join(self._types),
            "limit": str(ACTIONS_LIMIT),
            "memberCreator_fields": "username",
        }
        if since is not None:
            params["since"] = since
        data = self._get(f"boards/{board}/actions", params)
        if not isinstance(data, list):
            raise MalformedResponse(self.name, f"the actions of board {board} are not a list")
        return data

    def _board_cards(self, board: str) -> list[Any]:
        data = self._get(f"boards/{board}/cards/open", {"fields": CARD_FIELDS})
        if not isinstance(data, list):
            raise MalformedResponse(self.name, f"the cards of board {board} are not a list")
        return data

    def _card_or_none(self, card_id: str) -> Any:
        """A card by id; None when it no longer exists (deleted cards are simply gone)."""
        try:
            return self._get(f"cards/{card_id}", {"fields": CARD_FIELDS})
        except FatalError:
            last = self.client.last_response
            if last is not None and last.status_code == 404:
                return None
            raise

    def _refresh_lists(self, board: str) -> None:
        # Archived lists too, so cards left on them still have a name to map.
        data = self._get(f"boards/{board}/lists", {"fields": "name,closed", "filter": "all"})
        if not isinstance(data, list):
            raise MalformedResponse(self.name, f"the lists of board {board} are not a list")
        for entry in data:
            if isinstance(entry, dict):
                list_id, name = entry.get("id"), entry.get("name")
                if isinstance(list_id, str) and isinstance(name, str):
                    self._lists[list_id] = name

    def _refresh_members(self, board: str) -> None:
        data = self._get(f"boards/{board}/members", None)
        if not isinstance(data, list):
            raise MalformedResponse(self.name, f"the members of board {board} are not a list")
        for entry in data:
            if isinstance(entry, dict):
                self._learn_member(entry)
        self._board_members[board] = frozenset(
            e["id"] for e in data if isinstance(e, dict) and isinstance(e.get("id"), str)
        )

    def _learn_member(self, entry: dict[str, Any]) -> None:
        member_id, username = entry.get("id"), entry.get("username")
        if (
            isinstance(member_id, str)
            and ID.match(member_id)
            and isinstance(username, str)
            and 0 < len(username) <= 100
        ):
            self._usernames[member_id] = username.lower()
            self._member_ids[username.lower()] = member_id

    def _get(self, path: str, params: dict[str, str] | None) -> Any:
        return self.client.json(self.client.request("GET", path, params=params))

    # -- writing ------------------------------------------------------------------------

    def read_owners(self, ref: str) -> tuple[str, ...]:
        card_id = self._card_id(ref)
        raw = self._get(f"cards/{card_id}", {"fields": "idMembers,idBoard"})
        board = raw.get("idBoard") if isinstance(raw, dict) else None
        members = raw.get("idMembers") if isinstance(raw, dict) else None
        if (
            not isinstance(board, str)
            or not isinstance(members, list)
            or not all(isinstance(m, str) and ID.match(m) for m in members)
        ):
            raise MalformedResponse(self.name, f"card {card_id}: no readable idMembers")
        if any(m not in self._usernames and m not in self._claimed for m in members):
            self._refresh_members(board)
        self._last_read[card_id] = (board, tuple(members))
        return tuple(self._handle(m) for m in members)

    def write_owner(
        self, ref: str, add: str | None, remove: tuple[str, ...], handoff: Handoff
    ) -> tuple[str, ...]:
        card_id = self._card_id(ref)
        if card_id not in self._last_read:
            self.read_owners(ref)
        board, members = self._last_read.pop(card_id)
        gone: list[str] = []
        # Add before removing: if Trello refuses the new owner, the card keeps the old one
        # instead of being left with nobody.
        if add is not None:
            member = self._member_id(add, board)
            if member not in members:
                self.client.request("POST", f"cards/{card_id}/idMembers", params={"value": member})
        for handle in remove:
            if add is not None and handle.lower() == add.lower():
                continue
            member = self._member_id(handle, board)
            if member in members and not self._remove_member(card_id, member):
                gone.append(handle)
        self.gone_at_write = tuple(gone)
        return self.read_owners(ref)

    def _remove_member(self, card_id: str, member: str) -> bool:
        """Take a member off the card; False when they were not on it any more."""
        try:
            self.client.request("DELETE", f"cards/{card_id}/idMembers/{member}")
        except FatalError:
            last = self.client.last_response
            if last is None or last.status_code != 400 or "not on the card" not in last.text:
                raise
            # A person took them off since syncd read the card: the owners read back may
            # be just what syncd's change explains, so this is what tells the outbox.
            return False
        return True

    def _member_id(self, handle: str, board: str) -> str:
        if ID.match(handle.lower()):
            return handle.lower()
        member = self._member_ids.get(handle.lower())
        if member is None:
            self._refresh_members(board)
            member = self._member_ids.get(handle.lower())
        if member is None:
            raise FatalError(
                self.name,
                f"no member with username {handle!r} on board {board}; add them to the board, "
                "or fix their trello handle under [[people]]",
            )
        return member

    # -- handoff comments -------------------------------------------------------------

    def find_comment(self, ref: str, marker: str) -> str | None:
        card_id = self._card_id(ref)
        if self._me is None:
            me = self._get("members/me", {"fields": "id"})
            found = me.get("id") if isinstance(me, dict) else None
            self._me = found if isinstance(found, str) and ID.match(found) else None
        data = self._get(f"cards/{card_id}/actions", {"filter": COMMENT})
        for raw in data if isinstance(data, list) else ():
            action = read_action(raw, (COMMENT,))
            # Only syncd's own comment stands for its note: a board member (or, on a public
            # board, anyone) may copy a marker, and must not stop the note being posted.
            if (
                action is not None
                and action.text is not None
                and marker in action.text
                and action.creator is not None
                and action.creator == self._me
            ):
                return action.id
        return None

    def post_comment(self, ref: str, comment: Comment) -> str:
        card_id = self._card_id(ref)
        # Trello shows a comment's text as written: the marker is a small last line.
        text = f"{plain_text(comment)}\n\n`{comment.marker}`"
        response = self.client.request(
            "POST", f"cards/{card_id}/actions/comments", params={"text": text}, once=True
        )
        data = self.client.json(response)
        action_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(action_id, str) or not ID.match(action_id):
            raise MalformedResponse(self.name, f"card {card_id}: the comment answer has no id")
        return action_id

    def _card_id(self, ref: str) -> str:
        if not ID.match(ref):
            raise FatalError(self.name, f"{ref!r} is not a Trello card id")
        return ref

    # -- rate limits and bookkeeping ------------------------------------------------------

    def rate_budget(self) -> RateBudget | None:
        response = self.client.last_response
        if response is None:
            return None
        remaining = header_int(response.headers, "x-rate-limit-api-token-remaining")
        if remaining is None:
            return None
        return RateBudget(
            remaining, header_int(response.headers, "x-rate-limit-api-token-max"), None
        )

    def request_counts(self) -> Counter[str]:
        return Counter(self.client.counts)

    def close(self) -> None:
        self.client.close()


def _label_names(raw: object) -> tuple[str, ...]:
    """Names of a card's labels: what routing rules test. Informational, so a label without
    a readable name (Trello allows colour-only labels) is left out, not the card."""
    names: list[str] = []
    for label in raw if isinstance(raw, list) else ():
        name = label.get("name") if isinstance(label, dict) else None
        if isinstance(name, str) and name.strip() and name not in names:
            names.append(name[:255])
    return tuple(names[:_MAX_LABELS])


def _read_attached(value: str | None) -> tuple[int | None, tuple[str, ...]] | None:
    """(count, keys) as stored by _with_attachments; None when absent or unreadable (the
    attachments are then read again)."""
    try:
        data = json.loads(value) if value is not None else None
    except ValueError:
        return None
    n = data.get("n") if isinstance(data, dict) else None
    keys = data.get("keys") if isinstance(data, dict) else None
    if (n is not None and type(n) is not int) or not isinstance(keys, list):
        return None
    return n, tuple(k for k in keys if isinstance(k, str))


def _attachment_count(raw: dict[str, Any]) -> int | None:
    """The card's attachment count from its badges; None when it does not say."""
    badges = raw.get("badges")
    count = badges.get("attachments") if isinstance(badges, dict) else None
    return count if type(count) is int and count >= 0 else None


def _raw_id(raw: object) -> object:
    return raw.get("id") if isinstance(raw, dict) else None


ADAPTER = TrelloAdapter
