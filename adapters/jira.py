"""Jira: Jira Cloud (REST v3) or Jira Data Center / Server (REST v2), one JQL scope per source.

Deployments. ``flavor = "cloud"`` talks REST v3 to https://SITE.atlassian.net with Basic auth
(the account's email and an API token); ``flavor = "datacenter"`` talks REST v2 with a personal
access token sent as a Bearer token. ``base_url`` is the site in both cases.

Reading. Each pull runs one search, oldest change first::

    (<jql>) AND updated >= <epoch ms> ORDER BY updated ASC, key ASC

Cloud uses ``GET /rest/api/3/search/jql`` and follows ``nextPageToken`` until ``isLast``; Data
Center uses ``GET /rest/api/2/search`` with ``startAt``. The window is in epoch milliseconds:
the "yyyy/MM/dd HH:mm" form has minute precision and is read in the searching user's time
zone, which skips or repeats issues. Only the fields used are asked for. Each page of results
is one Page.

Cursor (owned here; the core stores it as JSON and hands it back)::

    {"updated": 1714564800000,           # bookmark, epoch ms; the next search starts
                                         # `overlap` before it
     "seen": {"OPS-7": 1714564801234}}   # issues read at or after that start: key -> updated

The bookmark is the newest ``updated`` read, but never later than the poll's start minus
``settle``: Jira's search index lags behind edits, so an issue edited just before a search
may only show up in a later one, and a bookmark past it would skip it for good. Every search
reaches back ``overlap`` before the bookmark, and issues that come back unchanged are dropped
by (key, updated), so an unchanged project yields nothing. Results come ordered by
``updated``, so once a page is applied everything before its last issue has been read, which
is what makes storing the bookmark page by page safe. If an issue read earlier in the same
pull comes back with a newer ``updated`` (edited mid-pull, it moved to the end), the pages
after its old place may have shifted under the page token, so the bookmark falls back to its
first ``updated`` and that stretch is read again next time.

Owner change times. ``updated`` moves on any edit, but a conflict must be decided by when the
owner changed. For the issues a page actually yields, Cloud asks
``POST /rest/api/3/changelog/bulkfetch`` for their assignee history: one request per page that
has changes, none otherwise. Data Center has no bulk endpoint, so its search asks for the
history inline (``expand=changelog``). The time of the latest assignee change becomes
``Observation.owner_changed_at``; an issue whose assignee never changed has had its owner since
it was created. When the history disagrees with the issue (its last assignee change does not
lead to the current assignee, as when the history lags), the time is left unknown and
``updated`` stands in. A no-change cycle therefore costs exactly one request.

State. ``fields.status.statusCategory.key`` gives the default: new -> open, indeterminate ->
in_progress, done -> done (and "undefined" -> open). The config's ``states`` table overrides
it by status name (``"blocked" = "blocked"``, ``"won't do" = "cancelled"``) or by category
(``"category:indeterminate" = "blocked"``); a status name beats a category.

Owners and identity. Jira has one assignee. Its handle is the accountId on Cloud and the user
name on Data Center, and ``jira`` handles under [[people]] are written the same way. An
assignee nobody claims stays an unmapped identity (``jira:<accountId>``), listed by
``syncd people``. Cloud hides email addresses unless each user allows them, so nobody is
matched by email.

Writing. ``PUT /rest/api/{3|2}/issue/{key}/assignee`` with ``{"accountId": ...}`` (Cloud) or
``{"name": ...}`` (Data Center); null unassigns. The assignee is then read back.

Rate limits. 429 and 503 are retried after ``Retry-After``, or after ``X-RateLimit-Reset``
when only that is given; ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` of the last answer
are what ``syncd status`` shows.

Cross-references come from the summary and the description (syncd.crossref tells what they
declare from what they mention), from the issue's own links (``issuelinks``, ``parent``,
``subtasks``: relations with their kind, read from the same search), and from the remote links
of each issue that changed (``GET .../issue/{key}/remotelink``: an issue or card URL there
declares the same work unless its relationship names a relation). A v3 description is an
Atlassian Document Format tree: its text, link marks and smart-link cards are read within a
node budget, so a hostile document costs bounded time; code blocks are fenced, so nothing in
code declares.
"""

from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import Field, field_validator, model_validator

from syncd.adapters.base import (
    Adapter,
    Unreadable,
    api_root,
    evidence,
    owner_entries,
    timestamp,
    timestamp_or_none,
    typed,
)
from syncd.adapters.jira_adf import adf_text, comment_adf
from syncd.adapters.jira_changelog import (
    CONTROL,
    History,
    assignee_changes,
    history_activity,
    inline_activity,
    inline_history,
    owner_change,
    user_id,
)
from syncd.commands import without_note
from syncd.config import CommentSettings, Duration, SecretRef, SecretsUnreadable, Strict
from syncd.crossref import References, item_key, read_references, relation_kind, with_links
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
from syncd.notes import is_syncd_text, plain_text
from syncd.redact import register_secret

_KEY = re.compile(r"^[A-Z][A-Z0-9_]{0,49}-[1-9][0-9]{0,11}$")
_ISSUE_ID = re.compile(r"^[0-9]{1,18}$")
# Cloud accountIds: 24 hex digits, or "<number>:<uuid>" for newer accounts; at most 128.
_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9:_-]{1,128}$")
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)

CATEGORY_STATES: dict[str, State] = {
    "new": "open",
    "indeterminate": "in_progress",
    "done": "done",
    "undefined": "open",
}
FIELDS = (
    "summary",
    "status",
    "assignee",
    "reporter",
    "description",
    "created",
    "updated",
    "labels",
    "components",
    "comment",
    # Jira's own links between issues: relations with their kind ("blocks", "duplicates",
    # a parent or sub-tasks), never a reason to merge.
    "issuelinks",
    "parent",
    "subtasks",
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_TITLE = 1024
# The changelog entries read back after a write, to find the write among them.
_TAIL = 20
_UNKNOWN = object()
_MAX_NAME = 255
_MAX_LABELS = 100  # labels and components kept per issue (routing rules test them)
# Issues remembered inside the overlap. Past this many (a bulk edit), the rest are yielded
# again next cycle, which the ledger takes as no change.
_MAX_SEEN = 2000
_MAX_LINK_PAGES = 100  # pages of one bulk changelog answer followed
_MAX_REMOTE_LINKS = 200  # remote links of one issue read
_MAX_COMMENT = 4000  # characters of a comment kept as activity
_COMMENT_NODES = 2000  # nodes of one comment's document read


class CommentVisibility(Strict):
    """Who may read syncd's handoff comments in Jira: members of a project role, or of a
    group (an internal comment); unset, everyone who sees the issue."""

    type: Literal["role", "group"]
    value: str = Field(min_length=1, max_length=255)


class JiraConfig(CommentSettings):
    type: Literal["jira"]
    flavor: Literal["cloud", "datacenter"] = "cloud"
    # Handoff comments visible only to this role or group (Jira's internal comments).
    comment_visibility: CommentVisibility | None = None
    base_url: str = Field(description="the site, e.g. https://acme.atlassian.net")
    email: str | None = Field(
        default=None, description="Cloud: the email of the account the API token belongs to"
    )
    token: SecretRef
    jql: str = Field(
        default="",
        description="which issues to sync, e.g. 'project = OPS'; empty: every issue the "
        "account can browse",
    )
    page_size: int = Field(default=100, ge=1, le=100)
    # Read each changed issue's remote links (one request per changed issue): where Jira's
    # GitHub integration and people put the URL of the same work in another tool.
    remote_links: bool = True
    overlap: Duration = timedelta(minutes=1)
    settle: Duration = timedelta(seconds=30)

    @field_validator("base_url")
    @classmethod
    def _base_url_shape(cls, v: str) -> str:
        root = api_root(
            v, shape="the site's URL, such as https://acme.atlassian.net", plain="a plain site URL"
        )
        if urlsplit(root).path.endswith(("/rest/api/2", "/rest/api/3")):
            raise ValueError("give the site's URL, without /rest/api/...")
        return root

    @field_validator("jql")
    @classmethod
    def _jql_shape(cls, v: str) -> str:
        if CONTROL.search(v.replace("\n", " ").replace("\t", " ")):
            raise ValueError("must not contain control characters")
        if len(v) > 4000:
            raise ValueError("is longer than 4000 characters")
        if _ORDER_BY.search(v):
            raise ValueError("leave out ORDER BY: syncd orders by updated, oldest first")
        return v.strip()

    @field_validator("states")
    @classmethod
    def _state_keys(cls, v: dict[str, State]) -> dict[str, State]:
        bad = [
            k for k in v if k.startswith("category:") and k.split(":", 1)[1] not in CATEGORY_STATES
        ]
        if bad:
            raise ValueError(
                f"unknown categor{'ies' if len(bad) > 1 else 'y'} {', '.join(map(repr, bad))}; "
                f"use category:{', category:'.join(CATEGORY_STATES)}, or a status name"
            )
        return v

    @field_validator("overlap", "settle")
    @classmethod
    def _window_bounds(cls, v: timedelta) -> timedelta:
        if v < timedelta(0) or v > timedelta(hours=1):
            raise ValueError("must be between 0s and 1h")
        return v

    @model_validator(mode="after")
    def _auth_matches_flavor(self) -> JiraConfig:
        if self.flavor == "cloud" and not self.email:
            raise ValueError("flavor 'cloud' needs email: the API token's account")
        if self.flavor == "datacenter" and self.email:
            raise ValueError("flavor 'datacenter' authenticates with the token alone; drop email")
        return self


@dataclass
class _Item:
    """What could be read of one issue before it was found unreadable (or fully)."""

    key: str | None = None
    updated: int | None = None  # epoch ms


@dataclass(frozen=True)
class _Issue:
    key: str
    id: str  # numeric; the bulk changelog names issues by it
    updated: int  # epoch ms
    created: datetime | None
    # The ids the changelog may name the assignee by: the accountId on Cloud; the user name
    # and user key on Data Center (newer Data Center users have keys like "JIRAUSER10100").
    owner_ids: frozenset[str]
    observation: Observation
    history: History | None = None  # inline (Data Center)
    # Comments (updated, epoch ms; as activity), from the search's `comment` field.
    said: tuple[tuple[int, Activity], ...] = ()
    changes: tuple[Activity, ...] = ()  # assignee and status changes (Data Center, inline)


@dataclass
class _Window:
    """Where one pull stands: the bookmark, the issues read near it, and a fallback."""

    bookmark: int | None
    seen: dict[str, int]
    first_read: dict[str, int] = field(default_factory=dict)
    floor: int | None = None

    @classmethod
    def resume(cls, cursor: Cursor | None) -> _Window:
        """The window a stored cursor describes. One that cannot be read starts from the
        beginning: reading everything again is slow but changes nothing."""
        cursor = cursor if isinstance(cursor, dict) else {}
        mark = cursor.get("updated")
        if type(mark) is not int or mark < 0:
            return cls(None, {})
        raw_seen = cursor.get("seen")
        seen = {
            k: v
            for k, v in (raw_seen.items() if isinstance(raw_seen, dict) else ())
            if isinstance(k, str) and type(v) is int
        }
        return cls(mark, seen)

    def start(self, overlap: int) -> int:
        return max(0, self.bookmark - overlap) if self.bookmark is not None else 0

    def is_repeat(self, key: str, updated: int) -> bool:
        # Older than what was read before means a lagging index showing a stale copy:
        # applying it could only roll the item back.
        previous = self.seen.get(key)
        return previous is not None and updated <= previous

    def record(self, key: str, updated: int) -> None:
        first = self.first_read.setdefault(key, updated)
        if first != updated:
            self.floor = first if self.floor is None else min(self.floor, first)
        if self.seen.get(key, -1) < updated:
            self.seen[key] = updated
        if self.bookmark is None or updated > self.bookmark:
            self.bookmark = updated

    def cursor(self, signpost: int, overlap: int) -> Cursor:
        if self.bookmark is None:
            return {}
        mark = min(self.bookmark, signpost)
        if self.floor is not None:
            mark = min(mark, self.floor)
        start = mark - overlap
        kept = {k: v for k, v in self.seen.items() if v >= start}
        if len(kept) > _MAX_SEEN:
            kept = dict(sorted(kept.items(), key=lambda kv: kv[1])[-_MAX_SEEN:])
        return {"updated": mark, "seen": kept}


def build_jql(scope: str, start_ms: int) -> str:
    """The search for everything in `scope` updated since `start_ms`, oldest change first.
    The key breaks ties, so issues updated in the same millisecond keep one order."""
    window = f"updated >= {start_ms}"
    where = f"({scope}) AND {window}" if scope else window
    return f"{where} ORDER BY updated ASC, key ASC"


def _ms(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(milliseconds=1)


def _rate_limit_wait(response: httpx.Response) -> float | None:
    """Seconds to wait before retrying a Jira rate limit (429, or 503 with a wait)."""
    if response.status_code not in (429, 503):
        return None
    wait = parse_retry_after(response.headers.get("retry-after"))
    if wait is not None:
        return wait
    reset = timestamp_or_none(response.headers.get("x-ratelimit-reset", "").replace("Z", "+00:00"))
    if reset is not None:
        return max(0.0, (reset - datetime.now(UTC)).total_seconds())
    return None  # the generic backoff applies


class JiraAdapter(Adapter[JiraConfig]):
    kind = "jira"
    Config = JiraConfig
    comments = True

    def __init__(self, config: JiraConfig, http: HttpOptions | None = None) -> None:
        super().__init__(config, http)
        try:
            token = config.secret("token")
        except KeyError:
            # Loaded with resolve=False (as `syncd config check` may do): read the token now.
            try:
                config.resolve_secrets()
            except SecretsUnreadable as exc:
                raise ConfigError(f"source {config.name}", exc.problems) from None
            token = config.secret("token")
        self.cloud = config.flavor == "cloud"
        self._projects: set[str] = set()  # project keys of the issues read
        self._links_refused = False  # the site answered 403: issue linking is off
        self._me: str | None = None  # syncd's own account (GET myself), read when needed
        self.api = "rest/api/3" if self.cloud else "rest/api/2"
        # The signpost's clock; tests replace it.
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        headers = {"Accept": "application/json"}
        if self.cloud:
            basic = base64.b64encode(f"{config.email}:{token}".encode()).decode()
            register_secret(basic)  # the header is redacted by name; this covers any echo
            headers["Authorization"] = f"Basic {basic}"
        else:
            headers["Authorization"] = f"Bearer {token}"
        self.client = ApiClient(
            service="jira",
            source=config.name,
            base_url=config.base_url,
            headers=headers,
            options=self.http,
            wait_rule=_rate_limit_wait,
        )

    # -- reading ------------------------------------------------------------------------

    def pull(self, cursor: Cursor | None) -> Iterator[Page]:
        window = _Window.resume(cursor)
        overlap = self.config.overlap // timedelta(milliseconds=1)
        signpost = _ms(self.clock() - self.config.settle)
        jql = build_jql(self.config.jql, window.start(overlap))
        since = window.start(overlap) if window.bookmark is not None else None
        token: str | None = None
        tokens: set[str] = set()
        start_at = 0
        while True:
            data = self._search(jql, token, start_at)
            issues = data.get("issues")
            if not isinstance(issues, list):
                raise MalformedResponse(self.name, "the search answer has no list of issues")
            page = self._read_page(issues, window, since)
            page.cursor = window.cursor(signpost, overlap)
            yield page
            if self.cloud:
                token = data.get("nextPageToken")
                if data.get("isLast") is True or not isinstance(token, str) or not token:
                    return
                if token in tokens:
                    raise MalformedResponse(self.name, "the search repeated a page token")
                tokens.add(token)
            else:
                total = data.get("total")
                start_at += len(issues)
                if not issues or type(total) is not int or start_at >= total:
                    return

    def _search(self, jql: str, token: str | None, start_at: int) -> dict[str, Any]:
        params = {"jql": jql, "maxResults": str(self.config.page_size), "fields": ",".join(FIELDS)}
        if self.cloud:
            if token is not None:
                params["nextPageToken"] = token
            path = f"{self.api}/search/jql"
        else:
            params["startAt"] = str(start_at)
            params["expand"] = "changelog"
            path = f"{self.api}/search"
        data = self.client.json(self.client.request("GET", path, params=params))
        if not isinstance(data, dict):
            raise MalformedResponse(self.name, f"the search answered a JSON {type(data).__name__}")
        return data

    def _read_page(self, issues: list[Any], window: _Window, since: int | None = None) -> Page:
        page = Page()
        fresh: list[_Issue] = []
        for raw in issues:
            item = _Item()
            try:
                issue = self._parse(raw, item)
            except Unreadable as exc:
                quarantined = Quarantined(self.name, item.key, exc.reason, evidence(raw))
                if item.key is None or item.updated is None:
                    page.quarantined.append(quarantined)
                    continue
                # Known key and time: remembered like any other issue, so it is reported
                # once, not at every cycle while it sits in the overlap.
                if not window.is_repeat(item.key, item.updated):
                    page.quarantined.append(quarantined)
                window.record(item.key, item.updated)
                continue
            if not window.is_repeat(issue.key, issue.updated):
                fresh.append(issue)
            window.record(issue.key, issue.updated)
        times = self._owner_times(fresh)
        for i in fresh:
            at, actor = times.get(i.key, (None, None))
            obs = replace(
                i.observation,
                owner_changed_at=at,
                owner_actor=actor,
                # Comments since the last pull only; the first pull reads no history as
                # activity (an old /assign must not run again).
                activity=tuple(
                    sorted(
                        [a for ms, a in i.said if since is not None and ms >= since]
                        + [
                            a
                            for a in self._changes.get(i.key, ())
                            if since is not None and _ms(a.at) >= since
                        ],
                        key=lambda a: a.at,
                    )
                ),
            )
            try:
                obs = self._with_remote_links(obs)
            except Unreadable as exc:
                page.quarantined.append(Quarantined(self.name, i.key, exc.reason))
                continue
            page.observations.append(obs)
        return page

    # -- remote links -------------------------------------------------------------------

    def _with_remote_links(self, obs: Observation) -> Observation:
        """`obs` with what its remote links declare: an issue or card URL linked without a
        relationship, or with one that names no relation ("links to"), is the same work;
        "is blocked by", "mentioned in" and the like are relations. Read only for issues
        that changed, so a quiet cycle costs no more than its search."""
        if not self.config.remote_links or self._links_refused:
            return obs
        try:
            response = self.client.request("GET", f"{self.api}/issue/{obs.ref}/remotelink")
        except FatalError:
            last = self.client.last_response
            status = last.status_code if last is not None else None
            if status == 404:
                return obs  # deleted or hidden since the search: nothing to add
            if status == 403:
                # Issue linking is switched off on this site: asking again costs a request
                # per changed issue and can only be refused again.
                self._links_refused = True
                return obs
            raise
        try:
            data = self.client.json(response)
        except MalformedResponse:
            raise Unreadable("its remote links answer is not JSON") from None
        if not isinstance(data, list):
            raise Unreadable(f"its remote links answer is a JSON {type(data).__name__}, not a list")
        declared: list[str] = []
        related: list[tuple[str, str | None]] = []
        for link in data[:_MAX_REMOTE_LINKS]:
            if not isinstance(link, dict):
                continue
            target = link.get("object")
            url = target.get("url") if isinstance(target, dict) else None
            key = item_key(url) if isinstance(url, str) else None
            if key is None:
                continue  # a link to anything but an issue or card says nothing of identity
            relationship = link.get("relationship")
            kind = relation_kind(relationship) if isinstance(relationship, str) else None
            if kind is None:
                declared.append(key)
            else:
                related.append((key, kind))
        mine = References(obs.declared, obs.mentions, obs.relation_kinds)
        refs = with_links(mine, declared, related, own=obs.keys)
        return replace(
            obs,
            declared=refs.declared,
            mentions=refs.mentions,
            relation_kinds=refs.relation_kinds,
        )

    def _parse(self, raw: object, item: _Item) -> _Issue:
        """Read one issue, filling `item` as fields are read so a failure can say which."""
        if not isinstance(raw, dict):
            raise Unreadable(f"an issue is a JSON {type(raw).__name__}, not an object")
        key = raw.get("key")
        if not isinstance(key, str) or not _KEY.match(key):
            raise Unreadable("key is missing or not an issue key such as OPS-7")
        item.key = key
        self._projects.add(key.rpartition("-")[0])
        fields = raw.get("fields")
        if not isinstance(fields, dict):
            raise Unreadable("fields is missing or not an object")
        # Jira writes "2024-05-01T12:00:00.000+0000", an offset without a colon, in the
        # searching user's time zone; fromisoformat reads it, and UTC makes times comparable.
        updated = timestamp(fields.get("updated"), "updated", form="a timestamp")
        item.updated = _ms(updated)
        issue_id = raw.get("id")
        if not isinstance(issue_id, str) or not _ISSUE_ID.match(issue_id):
            raise Unreadable("id is missing or not a numeric string")
        summary = typed(fields, "summary", str)
        state = self._state(typed(fields, "status", dict))
        owner, owner_ids = self._owner(fields)
        try:
            requester = self._assignee(fields.get("reporter"), "reporter")[0]
        except Unreadable:
            requester = None  # informational; an odd reporter is no reason to lose the issue
        text = self._description(fields.get("description"))
        keys = (f"jira:{key}",)
        refs = with_links(
            read_references(summary, text, self.rules, own=keys),
            related=_issue_relations(fields),
            own=keys,
        )
        observation = Observation(
            source=self.name,
            ref=key,
            url=f"{self.config.base_url}/browse/{key}",
            title=summary[:_MAX_TITLE],
            state=state,
            owners=(owner,) if owner is not None else (),
            updated_at=updated,
            requester=requester,
            keys=keys,
            mentions=refs.mentions,
            declared=refs.declared,
            relation_kinds=refs.relation_kinds,
            labels=_labels(fields.get("labels"), fields.get("components")),
        )
        history = None if self.cloud else inline_history(raw.get("changelog"), self.cloud)
        created = timestamp_or_none(fields.get("created"))
        said = self._comments(fields.get("comment"))
        changes = () if self.cloud else inline_activity(raw.get("changelog"))
        return _Issue(
            key, issue_id, item.updated, created, owner_ids, observation, history, said, changes
        )

    def _comments(self, raw: object) -> tuple[tuple[int, Activity], ...]:
        """The comments the search carried, as activity. One that cannot be read is left
        out: a comment is evidence of activity, never a reason to lose the issue."""
        listed = raw.get("comments") if isinstance(raw, dict) else None
        out = []
        for entry in listed if isinstance(listed, list) else ():
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                continue
            author = user_id(entry.get("author"), self.cloud)
            created = timestamp_or_none(entry.get("created"))
            updated = timestamp_or_none(entry.get("updated")) or created
            if author is None or created is None or updated is None:
                continue
            body = entry.get("body")
            text = (body if isinstance(body, str) else adf_text(body, _COMMENT_NODES)).strip()
            ours = is_syncd_text(text)
            if entry.get("visibility") is not None:
                text = without_note(text)  # an internal comment's words stay in Jira
            activity = Activity(
                actor=author,
                at=created,
                kind="comment",
                id=entry["id"],
                text=text[:_MAX_COMMENT],
                # Jira has no author association: whoever may comment works in the project.
                # Commands still come only from people mapped in the config.
                trusted=True,
                by_syncd=ours,
                edited=updated != created,
            )
            out.append((_ms(updated), activity))
        return tuple(out)

    def _state(self, status: object) -> State:
        if not isinstance(status, dict):
            raise Unreadable("status is missing or not an object")
        name = status.get("name")
        category = status.get("statusCategory")
        category_key = category.get("key") if isinstance(category, dict) else None
        if not isinstance(name, str) or not isinstance(category_key, str):
            raise Unreadable("status lacks a name or a statusCategory key")
        by_category = self.config.states.get(f"category:{category_key}") or CATEGORY_STATES.get(
            category_key, "open"
        )
        return self.config.states.get(name.strip().lower(), by_category)

    def _owner(self, fields: dict[str, Any]) -> tuple[str | None, frozenset[str]]:
        """The assignee: absent or mistyped is unknown (Unreadable), null is nobody."""
        entries = owner_entries(fields, "assignee", single=True)
        return self._assignee(entries[0], "assignee") if entries else (None, frozenset())

    def _assignee(self, raw: object, what: str) -> tuple[str | None, frozenset[str]]:
        """The handle of a user field, and every id the changelog may call that user by."""
        if raw is None:
            return None, frozenset()
        if not isinstance(raw, dict):
            raise Unreadable(f"{what} is not an object")
        if self.cloud:
            account = raw.get("accountId")
            if not isinstance(account, str) or not _ACCOUNT_ID.match(account):
                raise Unreadable(f"{what} has no valid accountId")
            return account, frozenset({account})
        name = raw.get("name")
        if not isinstance(name, str) or not name or len(name) > _MAX_NAME or CONTROL.search(name):
            raise Unreadable(f"{what} has no valid user name")
        user_key = raw.get("key")
        ids = {name} | ({user_key} if isinstance(user_key, str) else set())
        return name, frozenset(ids)

    def _description(self, raw: object) -> str:
        if raw is None or isinstance(raw, str):
            return raw or ""
        if self.cloud and isinstance(raw, dict):
            return adf_text(raw)
        raise Unreadable(f"description is a JSON {type(raw).__name__}")

    # -- owner change times ---------------------------------------------------------------

    def _owner_times(self, issues: list[_Issue]) -> dict[str, tuple[datetime | None, str | None]]:
        if not issues:
            return {}
        if self.cloud:
            histories = self._bulk_histories(issues)
        else:
            histories = {i.key: i.history or () for i in issues}
            self._changes = {i.key: i.changes for i in issues}
        return {
            i.key: owner_change(histories.get(i.key, ()), i.owner_ids, i.created) for i in issues
        }

    # Assignee and status changes of the issues just read, as activity, by key: the same
    # changelog answer that dates owner changes says who moved what, at no extra request.
    _changes: dict[str, tuple[Activity, ...]] = {}

    def _bulk_histories(self, issues: list[_Issue]) -> dict[str, History]:
        key_of = {i.id: i.key for i in issues} | {i.key: i.key for i in issues}
        found: dict[str, list[tuple[datetime, str | None, str | None]]] = {}
        changes: dict[str, list[Activity]] = {}
        body: dict[str, Any] = {
            "issueIdsOrKeys": [i.key for i in issues],
            "fieldIds": ["assignee", "status"],
            "maxResults": 1000,
        }
        tokens: set[str] = set()
        for _ in range(_MAX_LINK_PAGES):
            response = self.client.request(
                "POST", f"{self.api}/changelog/bulkfetch", json_body=body
            )
            data = self.client.json(response)
            if not isinstance(data, dict):
                raise MalformedResponse(self.name, "the changelog answer is not a JSON object")
            logs = data.get("issueChangeLogs")
            for log in logs if isinstance(logs, list) else ():
                if not isinstance(log, dict):
                    continue
                key = key_of.get(str(log.get("issueId")))
                if key is not None:
                    found.setdefault(key, []).extend(
                        assignee_changes(log.get("changeHistories"), self.cloud)
                    )
                    changes.setdefault(key, []).extend(
                        history_activity(log.get("changeHistories"), self.cloud)
                    )
            token = data.get("nextPageToken")
            if not isinstance(token, str) or not token or token in tokens:
                break
            tokens.add(token)
            body["nextPageToken"] = token
        self._changes = {k: tuple(v) for k, v in changes.items()}
        return {k: tuple(v) for k, v in found.items()}

    # -- writing ------------------------------------------------------------------------

    def read_owners(self, ref: str) -> tuple[str, ...]:
        key = self._key(ref)
        response = self.client.request(
            "GET", f"{self.api}/issue/{key}", params={"fields": "assignee"}
        )
        issue = self.client.json(response)
        fields = issue.get("fields") if isinstance(issue, dict) else None
        if not isinstance(fields, dict):
            raise MalformedResponse(self.name, f"{key}: the answer has no fields object")
        try:
            owner = self._owner(fields)[0]
        except Unreadable as exc:
            raise MalformedResponse(self.name, f"{key}: {exc.reason}") from None
        return (owner,) if owner is not None else ()

    def write_owner(
        self, ref: str, add: str | None, remove: tuple[str, ...], handoff: Handoff
    ) -> tuple[str, ...]:
        key = self._key(ref)
        if add is None and not remove:
            return self.read_owners(ref)
        # One assignee: setting the new one replaces the old; only an unassignment needs null.
        body = {"accountId" if self.cloud else "name": add}
        self.client.request("PUT", f"{self.api}/issue/{key}/assignee", json_body=body)
        if self.cloud:
            self._undo_overwrite(key, add, remove)
        return self.read_owners(ref)

    def _undo_overwrite(self, key: str, add: str | None, remove: tuple[str, ...]) -> None:
        """Jira has one assignee and no conditional write, so a person's reassignment that
        lands between syncd's read and its PUT would simply be replaced. The changelog says
        whom the PUT replaced: if not the owner syncd read, a person had acted in between,
        and their choice is put back. The outbox then sees owners its write does not explain
        and records the race; the next poll takes the person's change."""
        replaced = self._replaced_by(key, add)
        expected = set(remove) if remove else {None}
        if replaced is _UNKNOWN or replaced in expected:
            return
        self.client.request(
            "PUT", f"{self.api}/issue/{key}/assignee", json_body={"accountId": replaced}
        )

    def _replaced_by(self, key: str, add: str | None) -> str | object | None:
        """Whom the latest assignee change to `add` replaced (None: nobody), or _UNKNOWN
        when the changelog does not show that change (Jira records no no-op)."""
        path = f"{self.api}/issue/{key}/changelog"
        head = self.client.json(
            self.client.request("GET", path, params={"startAt": "0", "maxResults": "1"})
        )
        total = head.get("total") if isinstance(head, dict) else None
        if type(total) is not int or total <= 0:
            return _UNKNOWN
        start = max(0, total - _TAIL)
        page = self.client.json(
            self.client.request(
                "GET", path, params={"startAt": str(start), "maxResults": str(_TAIL)}
            )
        )
        values = page.get("values") if isinstance(page, dict) else None
        for history in reversed(values if isinstance(values, list) else []):
            items = history.get("items") if isinstance(history, dict) else None
            for item in reversed(items if isinstance(items, list) else []):
                if not isinstance(item, dict):
                    continue
                if item.get("fieldId", item.get("field")) != "assignee":
                    continue
                if item.get("to") != add:
                    return _UNKNOWN  # someone changed it again since: not ours to judge
                before = item.get("from")
                return before if before is None or isinstance(before, str) else _UNKNOWN
        return _UNKNOWN

    # -- handoff comments -------------------------------------------------------------

    def _own_account(self) -> str | None:
        if self._me is None:
            self._me = user_id(
                self.client.json(self.client.request("GET", f"{self.api}/myself")), self.cloud
            )
        return self._me

    def find_comment(self, ref: str, marker: str) -> str | None:
        key = self._key(ref)
        # Only syncd's own comment stands for its note: anyone who may comment can copy a
        # marker (keys and event ids count up), and must not stop the note being posted.
        me = self._own_account()
        params = {"orderBy": "-created", "maxResults": "100"}
        data = self.client.json(
            self.client.request("GET", f"{self.api}/issue/{key}/comment", params=params)
        )
        listed = data.get("comments") if isinstance(data, dict) else None
        for entry in listed if isinstance(listed, list) else ():
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                continue
            body = entry.get("body")
            text = body if isinstance(body, str) else adf_text(body, _COMMENT_NODES)
            if marker in text and me is not None and user_id(entry.get("author"), self.cloud) == me:
                return str(entry["id"])
        return None

    def post_comment(self, ref: str, comment: Comment) -> str:
        key = self._key(ref)
        payload: dict[str, Any] = {
            "body": comment_adf(comment)
            if self.cloud
            else f"{plain_text(comment)}\n\n{comment.marker}"
        }
        if self.config.comment_visibility is not None:
            visibility = self.config.comment_visibility
            payload["visibility"] = {"type": visibility.type, "value": visibility.value}
        data = self.client.json(
            self.client.request(
                "POST", f"{self.api}/issue/{key}/comment", json_body=payload, once=True
            )
        )
        comment_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(comment_id, str):
            raise MalformedResponse(self.name, f"{key}: the comment answer has no id")
        return comment_id

    def _key(self, ref: str) -> str:
        if not _KEY.match(ref):
            raise FatalError(self.name, f"{ref!r} is not a Jira issue key")
        return ref

    # -- rate limits and bookkeeping ------------------------------------------------------

    def rate_budget(self) -> RateBudget | None:
        response = self.client.last_response
        if response is None:
            return None
        headers = response.headers
        if "x-ratelimit-remaining" not in headers and "x-ratelimit-limit" not in headers:
            return None
        reset = timestamp_or_none(headers.get("x-ratelimit-reset", "").replace("Z", "+00:00"))
        return RateBudget(
            remaining=header_int(headers, "x-ratelimit-remaining"),
            limit=header_int(headers, "x-ratelimit-limit"),
            reset_at=reset,
        )

    def known_projects(self) -> frozenset[str]:
        return frozenset(self._projects)

    def request_counts(self) -> Counter[str]:
        return Counter(self.client.counts)

    def close(self) -> None:
        self.client.close()


def _labels(labels: object, components: object) -> tuple[str, ...]:
    """Labels, then component names: what routing rules test. Informational, so entries
    that cannot be read are left out rather than costing the issue."""
    names: list[str] = []
    for raw in labels if isinstance(labels, list) else ():
        if isinstance(raw, str) and raw and raw not in names:
            names.append(raw[:_MAX_NAME])
    for raw in components if isinstance(components, list) else ():
        name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(name, str) and name and name not in names:
            names.append(name[:_MAX_NAME])
    return tuple(names[:_MAX_LABELS])


def _issue_relations(fields: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(key, kind) of the issues an issue's own Jira links name: `issuelinks` read by the
    phrase of their side ("is blocked by" -> blocked_by, "clones" -> related), its parent,
    its sub-tasks. Entries that cannot be read are left out."""
    out: list[tuple[str, str | None]] = []
    links = fields.get("issuelinks")
    for link in links[:_MAX_REMOTE_LINKS] if isinstance(links, list) else ():
        if not isinstance(link, dict):
            continue
        kind = link.get("type")
        for side, phrase in (("outwardIssue", "outward"), ("inwardIssue", "inward")):
            other = link.get(side)
            key = other.get("key") if isinstance(other, dict) else None
            if isinstance(key, str) and _KEY.match(key):
                text = kind.get(phrase) if isinstance(kind, dict) else None
                named = relation_kind(text) if isinstance(text, str) else None
                out.append((f"jira:{key}", named or "related"))
    parent = fields.get("parent")
    key = parent.get("key") if isinstance(parent, dict) else None
    if isinstance(key, str) and _KEY.match(key):
        out.append((f"jira:{key}", "parent"))
    subtasks = fields.get("subtasks")
    for task in subtasks[:_MAX_REMOTE_LINKS] if isinstance(subtasks, list) else ():
        key = task.get("key") if isinstance(task, dict) else None
        if isinstance(key, str) and _KEY.match(key):
            out.append((f"jira:{key}", "child"))
    return out


ADAPTER = JiraAdapter
