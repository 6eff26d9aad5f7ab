"""GitHub Issues: one repository per source, on github.com or GitHub Enterprise Server.

Reading. ``pull`` lists the repository's issues oldest change first
(``GET /repos/{owner}/{repo}/issues?state=all&sort=updated&direction=asc``), following the
``Link`` header's ``rel="next"`` URL exactly as GitHub gives it. Pull requests come back in the
same list and are skipped. Each page becomes one Page, applied with its cursor in one ledger
transaction.

Cursor (owned here; the core stores it as JSON and hands it back)::

    {"since": "2024-05-01T12:00:00Z",   # where the next listing starts (inclusive)
     "seen": {"12": "3f9a0c1d2e4b5a69"}, # issues read at exactly `since`: number -> fingerprint
     "etag": "W/\\"abc\\""}               # only when the next first request will be identical

All three are optional; an empty or unreadable cursor lists everything. When an issue read
earlier in a pull changes before the pull ends, later cursors fall back to ``{"since": ...}``
at its old time, because offset paging may have skipped a neighbour (see Listing.record in
syncd.adapters.github_listing, which holds the cursor's rules).

``since`` is inclusive, so the issues at the boundary come back every cycle; those whose
fingerprint (a hash of what their Observation carries) is unchanged are dropped, which makes
an unchanged repository yield nothing. Deduplicating by fingerprint rather than by
(number, updated_at) alone also keeps a second change made within the same second as the
first, since GitHub's timestamps have one-second precision. Once the boundary second is a
minute behind GitHub's clock (its Date header), ``since`` steps one second past it and
``seen`` empties. The etag rule is explained in ``pull``: in the steady state a cycle with
no change is one conditional request answered 304, which GitHub does not count against the
rate limit.

State. The native state is ``open`` or ``closed``, with ``state_reason`` for closed issues.
The config's ``states`` table overrides the defaults with these keys:

    "open"                  an open issue             (default: open)
    "closed"                a closed issue            (default: done)
    "closed:<reason>"       closed with that reason   (defaults: not_planned and duplicate ->
                            cancelled; other reasons fall back to "closed")
    "label:<name>"          an open issue carrying the label, e.g. "label:blocked" = "blocked"

Label rules apply to open issues only, and the first rule in the config's order whose label
the issue carries wins, so the admin decides which label beats which. A closed issue is
decided by its state and reason alone: a "blocked" label left on a closed issue must not
bring it back to life in the ledger.

Owners. An issue can have up to 10 assignees; ``Observation.owners`` lists their logins in
GitHub's order. The core keeps one owner: the current owner stays owner while still among the
assignees (adding a co-assignee is not a handoff), otherwise the first assignee is taken.
A write-back adds the new owner and removes the previous one, leaving co-assignees alone.
GitHub silently ignores logins without push access, so every write reads the response back
and fails loudly when the new owner is not there.

Rate limits, as GitHub documents them: a 403 or 429 with ``x-ratelimit-remaining: 0`` waits
until ``x-ratelimit-reset``; one whose message names a secondary rate limit waits for
``retry-after``, or at least a minute, doubling while the limit keeps being hit; any other
403 is fatal. Writes are spaced ``write_spacing`` seconds apart, as GitHub asks.

Identity. Keys come from the title and body (syncd.crossref tells what they declare from what
they mention). Anyone can open an issue on a public repository, so only an author whose
``author_association`` is in ``trusted_authors`` (OWNER, MEMBER, COLLABORATOR by default; an
"@login" entry names one account), or who is a person under [[people]], may declare: anyone else's "[OPS-7] ..." title is kept as a
mention, with ``Observation.author_trusted`` false.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import Field, field_validator

from syncd.adapters.base import (
    Adapter,
    MemoryStore,
    StateStore,
    Unreadable,
    api_root,
    evidence,
    owner_entries,
    present,
    typed,
)
from syncd.adapters.github_activity import (
    TRUSTED_ASSOCIATIONS,
    CommentFeed,
    group_activity,
    latest_assignment,
    marker_comment,
    read_comment,
)
from syncd.adapters.github_listing import Listing, format_time, parse_time
from syncd.config import CommentSettings, SecretRef, SecretsUnreadable
from syncd.crossref import github_issue_keys, read_references
from syncd.errors import ConfigError, FatalError, MalformedResponse
from syncd.http import ApiClient, HttpOptions, header_int, parse_epoch, parse_retry_after
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

_REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9_.-]{1,100}$")
# GitHub logins, plus the "[bot]" suffix of app accounts and the "_" of managed users.
_LOGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\[\]-]{0,99}$")
# author_association values GitHub documents for issues and comments.
ASSOCIATIONS = (
    "OWNER",
    "MEMBER",
    "COLLABORATOR",
    "CONTRIBUTOR",
    "FIRST_TIME_CONTRIBUTOR",
    "FIRST_TIMER",
    "MANNEQUIN",
    "NONE",
)
_STATE_KEY = re.compile(r"^(open|closed|closed:[a-z_]{1,40}|label:.{1,100})$")

# What is kept of one issue, whatever arrives: titles are at most 256 characters on GitHub.
_MAX_TITLE = 1024
_MAX_URL = 2048
_MAX_ASSIGNEES = 100
_MAX_LABELS = 100  # labels kept per issue (routing rules test them)
_MAX_ETAG = 256
_MAX_COMMENT_PAGES = 10  # pages of comments read per request chain; the rest come next cycle
_SECONDARY_WAIT = 60.0
_SECONDARY_WAIT_CAP = 30 * 60.0


class GitHubConfig(CommentSettings):
    type: Literal["github"]
    repo: str = Field(description='"owner/name"')
    base_url: str = Field(
        default="https://api.github.com",
        description="https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise",
    )
    token: SecretRef
    per_page: int = Field(default=100, ge=1, le=100)
    # GitHub asks for at least a second between writes; 0 is for local emulators.
    write_spacing: float = Field(default=1.0, ge=0, le=60)
    # Whose issues may declare identity ("[OPS-7] ..." titles, "Jira: OPS-7" lines), by
    # author_association; people under [[people]] with a github handle always may. Anyone
    # can open an issue on a public repository, so outsiders' declarations are mentions.
    trusted_authors: list[str] = Field(
        default_factory=lambda: sorted(TRUSTED_ASSOCIATIONS),
        description="author_association values whose declarations link",
    )

    @field_validator("trusted_authors")
    @classmethod
    def _associations(cls, v: list[str]) -> list[str]:
        # An association name, or "@login" for one account (an integration's bot that is no
        # collaborator, say); logins are compared without case, as GitHub does.
        names = [a.strip() if a.strip().startswith("@") else a.strip().upper() for a in v]
        bad = [
            a
            for a, n in zip(v, names, strict=True)
            if not (n in ASSOCIATIONS or (_LOGIN.match(n[1:]) and n.startswith("@")))
        ]
        if bad:
            raise ValueError(
                f"unknown author_association {', '.join(map(repr, bad))}; use "
                f"{', '.join(ASSOCIATIONS)}, or @login for one account"
            )
        return names

    @field_validator("repo")
    @classmethod
    def _repo_shape(cls, v: str) -> str:
        if not _REPO.match(v) or v.split("/")[1] in {".", ".."}:
            raise ValueError('must be "owner/name", as in https://github.com/owner/name')
        return v

    @field_validator("base_url")
    @classmethod
    def _base_url_shape(cls, v: str) -> str:
        return api_root(
            v, shape="an http(s) URL such as https://api.github.com", plain="a plain API root"
        )

    @field_validator("states")
    @classmethod
    def _state_keys(cls, v: dict[str, State]) -> dict[str, State]:
        bad = [k for k in v if not _STATE_KEY.match(k)]
        if bad:
            raise ValueError(
                f"unknown key(s) {', '.join(map(repr, bad))}; use 'open', 'closed', "
                "'closed:<state_reason>' or 'label:<label name>'"
            )
        return v


@dataclass
class _Item:
    """Who an issue is, as far as it could be read, so that a quarantine can name it."""

    number: int | None = None
    ref: str | None = None
    updated_at: datetime | None = None


def _assignee_state(owners: tuple[str, ...]) -> str:
    """What is remembered of an issue's assignees, to notice when they change."""
    return json.dumps(sorted(h.lower() for h in owners))


def _logins(issue: Mapping[str, object], what: str = "assignees") -> tuple[str, ...]:
    # An explicit null or [] is "nobody"; a missing or mistyped field is unknown owners.
    raw = owner_entries(issue, what)
    if len(raw) > _MAX_ASSIGNEES:
        raise Unreadable(f"{what} has {len(raw)} entries; GitHub allows at most 10")
    out = []
    for entry in raw:
        login = entry.get("login") if isinstance(entry, dict) else None
        if not isinstance(login, str) or not _LOGIN.match(login):
            raise Unreadable(f"{what} holds an entry without a valid login")
        out.append(login)
    return tuple(out)


def _labels(raw: object) -> tuple[str, ...]:
    """Label names as the tool spells them, in its order, without repeats."""
    if not isinstance(raw, list):
        raise Unreadable("labels is missing or not a list")
    names: list[str] = []
    for label in raw:
        # The API gives label objects; its schema also allows bare names.
        name = label.get("name") if isinstance(label, dict) else label
        if not isinstance(name, str):
            raise Unreadable("labels holds an entry without a name")
        if name not in names:
            names.append(name)
    return tuple(names)


def _label_names(raw: object) -> set[str]:
    return {name.lower() for name in _labels(raw)}


def _fingerprint(obs: Observation) -> str:
    fields = [
        obs.state,
        list(obs.owners),
        obs.title,
        obs.url,
        obs.requester,
        list(obs.mentions),
        list(obs.declared),
        list(obs.relation_kinds),
        obs.author_trusted,
    ]
    fields.append(list(obs.labels))
    blob = json.dumps(fields, ensure_ascii=False).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


def _server_time(response: httpx.Response) -> datetime | None:
    try:
        when = parsedate_to_datetime(response.headers.get("date", ""))
    except (TypeError, ValueError):
        return None
    return when.astimezone(UTC) if when.tzinfo is not None else None


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return (
        scheme,
        (parts.hostname or "").lower(),
        parts.port or (443 if scheme == "https" else 80),
    )


class GitHubAdapter(Adapter[GitHubConfig]):
    kind = "github"
    Config = GitHubConfig
    comments = True
    default_states: ClassVar[dict[str, State]] = {
        "open": "open",
        "closed": "done",
        "closed:not_planned": "cancelled",
        "closed:duplicate": "cancelled",
    }

    def __init__(self, config: GitHubConfig, http: HttpOptions | None = None) -> None:
        super().__init__(config, http)
        try:
            token = config.secret("token")
        except KeyError:
            # Loaded with resolve=False (as `syncd check` may do): read the token now.
            try:
                config.resolve_secrets()
            except SecretsUnreadable as exc:
                raise ConfigError(f"source {config.name}", exc.problems) from None
            token = config.secret("token")
        # Refs and keys are lower-case: GitHub treats owner and name case-insensitively, and
        # a change of case in the config must not turn every issue into a new one.
        self.repo = config.repo.lower()
        self._trusted = frozenset(a for a in config.trusted_authors if not a.startswith("@"))
        # Logins that may declare: "@login" entries, and (see bind_people) people's handles.
        self._logins = frozenset(a[1:].lower() for a in config.trusted_authors if a[:1] == "@")
        self._people: frozenset[str] = self._logins
        self._secondary_strikes = 0
        self._last_write: float | None = None
        self._own_store: MemoryStore | None = MemoryStore()
        # Assignees syncd wrote on an issue, until the next listing shows them (see
        # _owner_history): issue number -> what _assignee_state makes of them.
        self._written: dict[int, str] = {}
        self._store: StateStore = self._own_store
        self.client = ApiClient(
            service="github",
            source=config.name,
            base_url=config.base_url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
            options=self.http,
            wait_rule=self._rate_limit_wait,
        )

    def bind_people(self, directory: Directory) -> None:
        self._people = self._logins | frozenset(
            h.lower() for p in directory.people.values() for h in p.handles_for(self.kind)
        )

    def author_trusted(self, association: object, login: str | None) -> bool:
        """Whether an issue's author may declare identity: a trusted author_association,
        or a person syncd is configured with. A missing association is an outsider's."""
        return (isinstance(association, str) and association in self._trusted) or (
            login is not None and login.lower() in self._people
        )

    # -- reading ------------------------------------------------------------------------

    def bind_store(self, store: StateStore) -> None:
        self._store, self._own_store = store, None

    def pull(self, cursor: Cursor | None) -> Iterator[Page]:
        feed: CommentFeed | None = None
        said: dict[int, list[Activity]] = {}
        if self.config.wants_comments:
            # GitHub stamps to the second; the feed starts at this one (inclusive).
            feed = CommentFeed.resume(cursor, format_time(datetime.now(UTC).replace(microsecond=0)))
            said = self._read_comments(feed)
        for page, last in self._pull_issues(cursor, said):
            if feed is not None and page.cursor is not None:
                # The comment feed moves on with the last page only: a pull that fails
                # half-way reads the comments again (commands run once: the ledger keeps them).
                before = (cursor or {}).get("comments")
                if last:
                    page.cursor["comments"] = feed.cursor(self._comments_etag)
                elif before is not None:
                    page.cursor["comments"] = before
            yield page

    def _pull_issues(
        self, cursor: Cursor | None, said: dict[int, list[Activity]]
    ) -> Iterator[tuple[Page, bool]]:
        listing, etag = Listing.resume(cursor)
        # What syncd last saw of each issue's assignees is compared only after the first
        # full listing: importing a repository is not a series of owner changes.
        incremental = listing.since is not None
        params: dict[str, str] = {
            "state": "all",
            "sort": "updated",
            "direction": "asc",
            "per_page": str(self.config.per_page),
        }
        if listing.since is not None:
            params["since"] = format_time(listing.since)
        headers = {"If-None-Match": etag} if etag else None
        response = self._request("GET", f"repos/{self.repo}/issues", params=params, headers=headers)
        if response.status_code == 304:
            # Nothing changed since the response that etag names, and that response was
            # read in full (see below), so there is nothing to yield and nothing to store,
            # unless comments came on issues the listing does not show again (edited ones).
            if said or not self._comments_unmoved:
                yield Page(observations=self._commented(said), cursor=dict(cursor or {})), True
            return
        fetched = {str(response.url)}
        first = True
        while True:
            items = self.client.json(response)
            if not isinstance(items, list):
                raise MalformedResponse(
                    self.name,
                    f"the issue listing for {self.repo} is a JSON {type(items).__name__}, "
                    "not a list",
                )
            page = self._read_page(items, listing, said)
            self._owner_history(page, incremental)
            page.observations = [
                replace(o, activity=group_activity(said, int(o.ref.rpartition("#")[2])))
                if int(o.ref.rpartition("#")[2]) in said
                else o
                for o in page.observations
            ]
            for o in page.observations:
                said.pop(int(o.ref.rpartition("#")[2]), None)
            next_url = self._next_url(response, fetched)
            if next_url is None:
                listing.settle(_server_time(response))
            new_etag = response.headers.get("etag")
            # An etag is worth keeping only if the next pull's first request is byte for
            # byte this one (same `since`, so nothing newer than the old bookmark was read)
            # and this page was the whole listing. GitHub's etag covers one page's body: a
            # full page with no next link could still grow a second page while the first
            # stays the same, so a short last page is required too. A 304 then means the
            # listing is exactly the one read here.
            keep = (
                first
                and next_url is None
                and len(items) < self.config.per_page
                and listing.unmoved
                and new_etag is not None
                and len(new_etag) <= _MAX_ETAG
            )
            page.cursor = listing.cursor(new_etag if keep else None)
            if next_url is None:
                page.observations += self._commented(said)
            # Only the items of this page are held; the caller applies it before the next.
            yield page, next_url is None
            if next_url is None:
                return
            first = False
            response = self._request("GET", next_url)

    # -- who changed the owner, and what people said (see adapters.github_activity) -------

    def _owner_history(self, page: Page, incremental: bool) -> None:
        """Give observations whose assignees changed their exact time and actor, from the
        issue's events, and remember the assignees seen (committed with the page)."""
        keys = {o.ref: "a:" + o.ref.rpartition("#")[2] for o in page.observations}
        stored = self._store.get(keys.values())
        out = []
        for obs in page.observations:
            key = keys[obs.ref]
            now = _assignee_state(obs.owners)
            before = stored.get(key)
            if before != now:
                page.state[key] = now
                # What syncd itself just wrote needs no events: the ledger knows that change.
                ours = self._written.pop(int(key[2:]), None) == now
                if not ours and (before is not None or (incremental and obs.owners)):
                    obs = self._with_assignment(obs)
            out.append(obs)
        page.observations = out
        if self._own_store is not None:  # no ledger: remember in memory
            self._own_store.apply(page.state)

    def _with_assignment(self, obs: Observation) -> Observation:
        number = obs.ref.rpartition("#")[2]
        path = f"repos/{self.repo}/issues/{number}/events"
        response = self._request("GET", path, params={"per_page": "100"})
        last = response.links.get("last", {}).get("url")
        if last is not None and _origin(last) == _origin(self.config.base_url):
            response = self._request("GET", last)  # the latest events are on the last page
        events = self.client.json(response)
        actor, at = latest_assignment(
            events if isinstance(events, list) else [], obs.owners, parse_time
        )
        if at is None:
            return obs
        return replace(obs, owner_actor=actor, owner_changed_at=at)

    _comments_etag: str | None = None
    _comments_unmoved: bool = True

    def _read_comments(self, feed: CommentFeed) -> dict[int, list[Activity]]:
        """New comments of the whole repository, by issue number (one request when quiet)."""
        params = {"sort": "updated", "direction": "asc", "per_page": "100"}
        if feed.since is not None:
            params["since"] = feed.since
        headers = {"If-None-Match": feed.etag} if feed.etag else None
        response = self._request(
            "GET", f"repos/{self.repo}/issues/comments", params=params, headers=headers
        )
        self._comments_etag, self._comments_unmoved = feed.etag, True
        if response.status_code == 304:
            return {}
        said: dict[int, list[Activity]] = {}
        fetched = {str(response.url)}
        pages = 1
        while True:
            items = self.client.json(response)
            for raw in items if isinstance(items, list) else ():
                read = read_comment(raw, parse_time)
                if read is not None and feed.record(read[1], read[2]):
                    said.setdefault(read[0], []).append(read[3])
            next_url = self._next_url(response, fetched)
            if next_url is None or pages >= _MAX_COMMENT_PAGES:
                break
            pages += 1
            response = self._request("GET", next_url)
        etag = response.headers.get("etag")
        single = pages == 1 and next_url is None
        self._comments_unmoved = feed.unmoved
        self._comments_etag = etag if single and feed.unmoved and etag else None
        return said

    def _commented(self, said: dict[int, list[Activity]]) -> list[Observation]:
        """Observations for issues people commented on that the listing did not show:
        each is read once more, so its comments reach the ledger with it. syncd's own
        comments need no reading."""
        out = []
        for number, acts in sorted(said.items()):
            if all(a.by_syncd for a in acts):
                continue
            response = self._request("GET", f"repos/{self.repo}/issues/{number}")
            if response.status_code != 200:
                continue
            try:
                obs = self._observe(self.client.json(response), _Item())
            except Unreadable:
                continue  # the listing quarantines it when it shows it
            out.append(replace(obs, activity=group_activity(said, number)))
        said.clear()
        return out

    def find_comment(self, ref: str, marker: str) -> str | None:
        number = self._number(ref)
        response = self._request(
            "GET", f"repos/{self.repo}/issues/{number}/comments", params={"per_page": "100"}
        )
        fetched = {str(response.url)}
        for _ in range(_MAX_COMMENT_PAGES):
            items = self.client.json(response)
            found = marker_comment(items if isinstance(items, list) else [], marker)
            if found is not None:
                return found
            next_url = self._next_url(response, fetched)
            if next_url is None:
                return None
            response = self._request("GET", next_url)
        return None

    def post_comment(self, ref: str, comment: Comment) -> str:
        number = self._number(ref)
        # Markdown hides an HTML comment: the marker is there for syncd, not for people.
        body = f"{plain_text(comment)}\n\n<!-- {comment.marker} -->"
        path = f"repos/{self.repo}/issues/{number}/comments"
        response = self._write_json("POST", path, {"body": body}, once=True)
        data = self.client.json(response)
        comment_id = data.get("id") if isinstance(data, dict) else None
        if response.status_code != 201 or type(comment_id) is not int:
            raise MalformedResponse(self.name, f"{ref}: the comment answer has no id")
        return str(comment_id)

    def _next_url(self, response: httpx.Response, fetched: set[str]) -> str | None:
        url = response.links.get("next", {}).get("url")
        if url is None:
            return None
        # The next URL is followed as given, but the token goes with it: it must point at
        # the configured API, and a loop of links must not poll forever.
        if _origin(url) != _origin(self.config.base_url):
            raise MalformedResponse(
                self.name, "the Link header points away from the configured API; not followed"
            )
        if url in fetched:
            raise MalformedResponse(self.name, "the Link header leads back to a page already read")
        fetched.add(url)
        return url

    def _read_page(self, items: list[Any], listing: Listing, keep: Collection[int] = ()) -> Page:
        page = Page()
        for raw in items:
            if isinstance(raw, dict) and "pull_request" in raw:
                continue
            item = _Item()
            try:
                obs = self._observe(raw, item)
            except Unreadable as exc:
                quarantined = Quarantined(self.name, item.ref, exc.reason, evidence(raw))
                if item.number is None or item.updated_at is None:
                    page.quarantined.append(quarantined)
                    continue
                # Known number and time: remember it like any other item, so it is reported
                # once, not at every cycle while it sits on the boundary.
                fp = "q" + hashlib.blake2b(quarantined.payload.encode(), digest_size=8).hexdigest()
                if not listing.is_repeat(item.number, item.updated_at, fp):
                    page.quarantined.append(quarantined)
                listing.record(item.number, item.updated_at, fp)
                continue
            assert item.number is not None  # set by _observe before it returns
            fp = _fingerprint(obs)
            # An issue people commented on comes with its comments, changed or not.
            if not listing.is_repeat(item.number, obs.updated_at, fp) or item.number in keep:
                page.observations.append(obs)
            listing.record(item.number, obs.updated_at, fp)
        return page

    def _observe(self, raw: object, item: _Item) -> Observation:
        """Map one issue, filling `item` as fields are read so a failure can say which."""
        if not isinstance(raw, dict):
            raise Unreadable(f"an issue is a JSON {type(raw).__name__}, not an object")
        number = raw.get("number")
        if type(number) is not int or number <= 0:
            raise Unreadable("number is missing or not a positive integer")
        item.number, item.ref = number, f"{self.repo}#{number}"
        item.updated_at = parse_time(raw.get("updated_at"))
        title = typed(raw, "title", str)
        body = raw.get("body")
        if body is not None and not isinstance(body, str):
            raise Unreadable("body is not a string")
        url = raw.get("html_url")
        if (
            not isinstance(url, str)
            or len(url) > _MAX_URL
            or not url.startswith(("https://", "http://"))
        ):
            raise Unreadable("html_url is missing or not an http(s) URL")
        owners = _logins(raw)
        state = self._state(present(raw, "state"), raw.get("state_reason"), raw.get("labels"))
        user = raw.get("user")
        login = user.get("login") if isinstance(user, dict) else None
        # The requester is informational; a deleted account ("ghost") or an odd value is
        # no reason to lose the issue.
        requester = login if isinstance(login, str) and _LOGIN.match(login) else None
        keys = github_issue_keys(self.repo, number)
        trusted = self.author_trusted(raw.get("author_association"), requester)
        refs = read_references(title, body, self.rules, own=keys, declaring=trusted)
        return Observation(
            source=self.name,
            ref=item.ref,
            url=url,
            title=title[:_MAX_TITLE],
            state=state,
            owners=owners,
            updated_at=item.updated_at,
            requester=requester,
            keys=keys,
            mentions=refs.mentions,
            declared=refs.declared,
            relation_kinds=refs.relation_kinds,
            author_trusted=trusted,
            labels=_labels(raw.get("labels"))[:_MAX_LABELS],
        )

    def _state(self, native: object, reason: object, labels: object) -> State:
        if native not in ("open", "closed"):
            raise Unreadable(f"state {str(native)[:40]!r} is neither 'open' nor 'closed'")
        if reason is not None and not isinstance(reason, str):
            raise Unreadable("state_reason is not a string")
        names = _label_names(labels)
        if native == "open":
            for key, state in self.config.states.items():
                if key.startswith("label:") and key[len("label:") :] in names:
                    return state
            return self.map_state("open")
        closed = self.map_state("closed", fallback="done")
        return self.map_state(f"closed:{reason}", fallback=closed) if reason else closed

    def read_owners(self, ref: str) -> tuple[str, ...]:
        number = self._number(ref)
        response = self._request("GET", f"repos/{self.repo}/issues/{number}")
        return self._owners_in(response, ref)

    # -- writing ------------------------------------------------------------------------

    def write_owner(
        self, ref: str, add: str | None, remove: tuple[str, ...], handoff: Handoff
    ) -> tuple[str, ...]:
        number = self._number(ref)
        path = f"repos/{self.repo}/issues/{number}/assignees"
        owners: tuple[str, ...] | None = None
        self.gone_at_write, self.wrote_nothing = (), False
        if remove:
            # Removing an assignee who is gone answers just like removing one who is there,
            # and the wait between writes widens the window since the outbox read the
            # issue: read it again right before writing. An owner syncd meant to remove
            # whom someone took off meanwhile is a person's change: write nothing over it.
            self._space_writes()
            owners = self.read_owners(ref)
            there = {o.lower() for o in owners}
            self.gone_at_write = tuple(h for h in remove if h.lower() not in there)
            self.wrote_nothing = bool(self.gone_at_write)
            if self.wrote_nothing:
                return owners
        # Add before removing: if GitHub refuses the new owner, the issue keeps the old one
        # instead of being left with nobody.
        if add is not None:
            owners = self._owners_in(self._write("POST", path, [add]), ref)
            if add.lower() not in {o.lower() for o in owners}:
                raise FatalError(
                    self.name,
                    f"GitHub did not assign {add} to {ref}; does {add} have push access to "
                    f"{self.repo}? (an issue also takes at most 10 assignees)",
                )
        drop = [h for h in remove if add is None or h.lower() != add.lower()]
        if drop:
            owners = self._owners_in(self._write("DELETE", path, drop), ref)
        after = owners if owners is not None else self.read_owners(ref)
        self._written[number] = _assignee_state(after)
        return after

    def _write(self, method: str, path: str, logins: list[str]) -> httpx.Response:
        return self._write_json(method, path, {"assignees": logins})

    def _write_json(
        self, method: str, path: str, body: dict[str, Any], *, once: bool = False
    ) -> httpx.Response:
        self._space_writes()
        try:
            return self._request(method, path, json_body=body, once=once)
        finally:
            self._last_write = time.monotonic()

    def _space_writes(self) -> None:
        """Wait until `write_spacing` has passed since the last write, as GitHub asks.
        The wait is then paid: the write right after the re-read before it does not wait
        again."""
        if self._last_write is not None:
            wait = self.config.write_spacing - (time.monotonic() - self._last_write)
            if wait > 0:
                self.http.sleep(wait)
            self._last_write = None

    def _number(self, ref: str) -> int:
        repo, sep, number = ref.rpartition("#")
        if not sep or repo.lower() != self.repo or not number.isdigit():
            raise FatalError(self.name, f"{ref!r} is not an issue of {self.repo}")
        return int(number)

    def _owners_in(self, response: httpx.Response, ref: str) -> tuple[str, ...]:
        if response.status_code not in (200, 201):
            # A transferred issue answers 301; redirects are not followed with the token.
            raise FatalError(
                self.name, f"{ref} answered {response.status_code}; was the issue moved?"
            )
        issue = self.client.json(response)
        try:
            if not isinstance(issue, dict):
                raise Unreadable(f"the issue is {type(issue).__name__}, not an object")
            return _logins(issue)
        except Unreadable as exc:
            raise MalformedResponse(self.name, f"{ref}: {exc.reason}") from None

    # -- HTTP and rate limits -------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        once: bool = False,
    ) -> httpx.Response:
        response = self.client.request(
            method, url, params=params, json_body=json_body, headers=headers, once=once
        )
        self._secondary_strikes = 0
        return response

    def _rate_limit_wait(self, response: httpx.Response) -> float | None:
        """Seconds to wait before retrying, when `response` is a GitHub rate limit."""
        if response.status_code not in (403, 429):
            return None
        headers = response.headers
        retry_after = parse_retry_after(headers.get("retry-after"))
        secondary = "secondary rate limit" in response.text[:2000].lower()
        if secondary and retry_after is not None:
            return retry_after
        if headers.get("x-ratelimit-remaining") == "0":
            reset = parse_epoch("x-ratelimit-reset", headers.get("x-ratelimit-reset"))
            if reset is None:
                return _SECONDARY_WAIT
            # One second more than asked, so a clock slightly behind GitHub's doesn't retry
            # a moment too early and spend another request on a refusal.
            return max(0.0, reset.timestamp() - time.time()) + 1.0
        # GitHub sends retry-after only with a rate limit, so a 403 carrying one is treated
        # as one even when its message is worded differently.
        if retry_after is not None:
            return retry_after
        if secondary:
            wait = min(_SECONDARY_WAIT * 2.0**self._secondary_strikes, _SECONDARY_WAIT_CAP)
            self._secondary_strikes += 1
            return wait
        return None  # a plain 403 (no access, blocked...) is fatal; a 429 uses the generic rule

    def rate_budget(self) -> RateBudget | None:
        response = self.client.last_response
        if response is None or "x-ratelimit-remaining" not in response.headers:
            return None

        return RateBudget(
            remaining=header_int(response.headers, "x-ratelimit-remaining"),
            limit=header_int(response.headers, "x-ratelimit-limit"),
            reset_at=parse_epoch("x-ratelimit-reset", response.headers.get("x-ratelimit-reset")),
        )

    def request_counts(self) -> Counter[str]:
        return Counter(self.client.counts)

    def close(self) -> None:
        self.client.close()


ADAPTER = GitHubAdapter
