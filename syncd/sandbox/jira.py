"""A stateful Jira Cloud REST v3 emulator, served at a site root (as https://SITE.atlassian.net).

It serves the search, issue, assignee, changelog (single and bulk), myself and user-search
endpoints syncd uses, in the shapes Jira Cloud produces (the contract test checks them
against Atlassian's own description), with the behaviours an adapter has to cope with:

* ``/rest/api/3/search/jql`` pages with an opaque ``nextPageToken`` and ``isLast`` (no
  ``total``); the token is an offset underneath, so an issue edited mid-pagination shifts the
  pages after it, as a real offset does. The default ``fields`` is ``id`` only. A query with
  no restriction is refused, and the retired ``/rest/api/3/search`` answers 410.
* JQL dates in epoch milliseconds, or minute-precision strings read in the searching user's
  time zone (see syncd.sandbox.jql).
* Timestamps written as Jira writes them: milliseconds and a colon-less offset in the API
  user's time zone (``2024-05-01T14:00:00.000+0200``).
* A search index that can lag behind edits (``search_lag``): recently edited issues are
  missing from search results for that long, though ``GET issue`` shows them.
* Changelog entries for assignee, status, summary and description changes; none for the
  fields an issue was created with, as in Jira.
* A request budget, reported in ``X-RateLimit-*`` headers, that runs out into 429 with
  ``Retry-After``.

Accounts are identified by accountId ("712020:<uuid>", or 24 hex digits for older accounts);
email addresses are shown only for users who allow it, and always to the API user itself.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import json
import random
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from syncd.http import TraceWriter
from syncd.sandbox.jql import JqlError, Query, parse
from syncd.sandbox.server import Emulator, HttpError, Request, Response, json_response

# The emulator's own credentials: they guard nothing but a loopback test server.
DEFAULT_EMAIL = "syncd-bot@example.com"
DEFAULT_TOKEN = "sandbox-jira-api-token"  # noqa: S105
AVATARS = "https://avatar-management--avatars.us-west-2.prod.public.atl-paas.net"
ISSUE_EXPAND = "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations"
ALL_FIELDS = (
    "summary",
    "status",
    "assignee",
    "reporter",
    "creator",
    "description",
    "created",
    "updated",
    "project",
    "issuetype",
    "labels",
    "components",
    "comment",
    "issuelinks",
)
# Issue link types a new Jira site has: name -> (inward phrase, outward phrase).
LINK_TYPES: dict[str, tuple[str, str]] = {
    "Blocks": ("is blocked by", "blocks"),
    "Cloners": ("is cloned by", "clones"),
    "Duplicate": ("is duplicated by", "duplicates"),
    "Relates": ("relates to", "relates to"),
}
# Status categories as Jira numbers them.
CATEGORIES: dict[str, tuple[int, str, str]] = {
    "new": (2, "blue-gray", "To Do"),
    "indeterminate": (4, "yellow", "In Progress"),
    "done": (3, "green", "Done"),
}
DEFAULT_STATUSES: dict[str, tuple[str, str]] = {  # name -> (id, category key)
    "To Do": ("10000", "new"),
    "In Progress": ("3", "indeterminate"),
    "Blocked": ("10002", "indeterminate"),
    "Done": ("10001", "done"),
}
MAX_RESULTS = 100  # per page when fields other than id and key are asked for
MAX_RESULTS_IDS = 5000

Clock = Callable[[], datetime]


def _error(status: int, *messages: str, **errors: str) -> HttpError:
    return HttpError(json_response(status, {"errorMessages": list(messages), "errors": errors}))


def adf(*paragraphs: str | list[dict[str, Any]]) -> dict[str, Any]:
    """An Atlassian Document Format document: one paragraph per argument, either plain text
    or a list of inline nodes (see `text` and `link`)."""
    content = []
    for p in paragraphs:
        inline = [text(p)] if isinstance(p, str) else p
        content.append({"type": "paragraph", "content": inline})
    return {"type": "doc", "version": 1, "content": content}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def link(value: str, href: str) -> dict[str, Any]:
    return {"type": "text", "text": value, "marks": [{"type": "link", "attrs": {"href": href}}]}


@dataclass
class _User:
    account_id: str
    display_name: str
    email: str | None
    email_visible: bool
    active: bool = True
    time_zone: str = "Etc/UTC"


@dataclass
class _History:
    id: str
    author: str | None  # accountId
    created: datetime
    items: list[dict[str, Any]]


@dataclass
class _Comment:
    id: str
    author: str  # accountId
    body: dict[str, Any]  # ADF
    created: datetime
    updated: datetime
    visibility: dict[str, str] | None = None


@dataclass
class _Issue:
    id: str
    key: str
    project: str
    summary: str
    description: dict[str, Any] | None
    status: str
    reporter: str | None
    created: datetime
    updated: datetime
    assignee: str | None = None
    history: list[_History] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)
    remote_links: list[dict[str, Any]] = field(default_factory=list)  # as the API shows them
    comments: list[_Comment] = field(default_factory=list)
    # Links to other issues: (link id, type name, this issue is the outward side, other key).
    links: list[tuple[str, str, bool, str]] = field(default_factory=list)


@dataclass
class _Project:
    key: str
    id: str
    name: str
    next_number: int = 1


class JiraEmulator(Emulator):
    service = "jira"
    prefix = ""
    server_name = "AtlassianEdge"

    def __init__(
        self,
        *,
        email: str = DEFAULT_EMAIL,
        token: str = DEFAULT_TOKEN,
        clock: Clock | None = None,
        trace: TraceWriter | None = None,
        time_zone: str = "Etc/UTC",
        rate_limit: int = 10_000,
        search_lag: float = 0.0,
    ) -> None:
        super().__init__(trace=trace)
        self.email = email
        self.token = token
        # Data timestamps come from here; a test may swap it for a fake at any time.
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.search_lag = search_lag  # seconds an edit takes to reach search results
        self._users: dict[str, _User] = {}
        self._projects: dict[str, _Project] = {}
        self._issues: dict[str, _Issue] = {}  # key -> issue
        self._statuses = dict(DEFAULT_STATUSES)
        self._issue_ids = itertools.count(10_001)
        self._history_ids = itertools.count(10_100)
        self._link_ids = itertools.count(10_000)
        self._comment_ids = itertools.count(10_500)
        self._random = random.Random(20240501)
        # The budget runs on the wall clock, not `clock`: a client waits in real time.
        self._rate_limit = rate_limit
        self._remaining = rate_limit
        self._reset = time.time() + 3600
        self.bot = self.add_user("syncd bot", email=email, email_visible=False, time_zone=time_zone)

        api = "/rest/api/3"
        issue = api + "/issue/{key}"
        self.route("GET", api + "/search/jql", self._search_get)
        self.route("POST", api + "/search/jql", self._search_post)
        self.route("GET", api + "/search", self._search_retired)
        self.route("POST", api + "/search", self._search_retired)
        self.route("GET", issue, self._get_issue)
        self.route("PUT", issue + "/assignee", self._put_assignee)
        self.route("GET", issue + "/changelog", self._get_changelog)
        self.route("GET", issue + "/remotelink", self._get_remote_links)
        self.route("POST", issue + "/remotelink", self._post_remote_link)
        self.route("GET", issue + "/comment", self._get_comments)
        self.route("POST", issue + "/comment", self._post_comment)
        self.route("POST", api + "/changelog/bulkfetch", self._bulk_changelog)
        self.route("GET", api + "/myself", lambda r: json_response(200, self._myself()))
        self.route("GET", api + "/user/search", self._user_search)

    # -- control API (tests, demo) -----------------------------------------------------
    def add_user(
        self,
        display_name: str,
        *,
        email: str | None = None,
        email_visible: bool = False,
        active: bool = True,
        time_zone: str = "Etc/UTC",
        classic_id: bool = False,
    ) -> str:
        """A user; returns the accountId ("712020:<uuid>", or 24 hex digits if classic)."""
        with self.lock:
            if classic_id:
                account = f"{self._random.getrandbits(96):024x}"
            else:
                account = f"712020:{uuid.UUID(int=self._random.getrandbits(128), version=4)}"
            self._users[account] = _User(
                account, display_name, email, email_visible, active, time_zone
            )
            return account

    def add_project(self, key: str, name: str | None = None, *, next_number: int = 1) -> None:
        """A project; its next issue gets `next_number` (a project that has had issues)."""
        with self.lock:
            project_id = str(10_000 + len(self._projects))
            self._projects[key] = _Project(key, project_id, name or key, next_number)

    def add_status(self, name: str, category: str) -> None:
        with self.lock:
            if category not in CATEGORIES:
                raise ValueError(f"category must be one of {sorted(CATEGORIES)}")
            self._statuses[name] = (str(10_100 + len(self._statuses)), category)

    def create_issue(
        self,
        project: str,
        summary: str,
        description: str | dict[str, Any] | None = None,
        *,
        assignee: str | None = None,
        reporter: str | None = None,
        status: str = "To Do",
    ) -> str:
        """Create an issue as the web UI would; returns its key. Creation leaves no changelog."""
        with self.lock:
            p = self._projects.get(project)
            if p is None:
                raise KeyError(f"no project {project} in the Jira emulator; add_project() it first")
            self._require_user(assignee)
            self._require_user(reporter)
            if status not in self._statuses:
                raise KeyError(f"no status {status!r}")
            key = f"{project}-{p.next_number}"
            p.next_number += 1
            doc = adf(description) if isinstance(description, str) else description
            now = self._now()
            self._issues[key] = _Issue(
                str(next(self._issue_ids)),
                key,
                project,
                summary,
                doc,
                status,
                reporter or self.bot,
                now,
                now,
                assignee,
            )
            return key

    def set_labels(
        self, key: str, labels: Iterable[str] = (), components: Iterable[str] = ()
    ) -> None:
        """Replace an issue's labels and components, as someone in the web UI would."""
        with self.lock:
            issue = self._get(key)
            issue.labels = list(dict.fromkeys(labels))
            issue.components = list(dict.fromkeys(components))
            issue.updated = self._now()

    def set_assignee(self, key: str, account_id: str | None, *, by: str | None = None) -> None:
        """Someone changes the assignee in Jira (recorded in the changelog)."""
        with self.lock:
            self._require_user(account_id)
            self._assign(self._get(key), account_id, by)

    def add_comment(
        self,
        key: str,
        body: str | dict[str, Any],
        *,
        by: str,
        visibility: dict[str, str] | None = None,
    ) -> str:
        """`by` (an accountId) comments on the issue, seen by everyone or, with
        `visibility` ({"type": "role", "value": "Developers"}), only by that role or group;
        returns the comment id. As in Jira, a comment moves the issue's `updated` and leaves
        no changelog entry."""
        with self.lock:
            self._require_user(by)
            doc = adf(body) if isinstance(body, str) else body
            return self._comment(self._get(key), doc, by, visibility).id

    def comments(self, key: str) -> list[dict[str, Any]]:
        with self.lock:
            issue = self._get(key)
            return [self._comment_json(issue, c) for c in issue.comments]

    def transition(self, key: str, status: str, *, by: str | None = None) -> None:
        with self.lock:
            issue = self._get(key)
            if status not in self._statuses:
                raise KeyError(f"no status {status!r}")
            if status != issue.status:
                old = self._statuses[issue.status][0]
                change = _item("status", old, issue.status, self._statuses[status][0], status)
                issue.status = status
                self._log_change(issue, by, [change])

    def edit_issue(
        self,
        key: str,
        *,
        summary: str | None = None,
        description: str | dict[str, Any] | None = None,
        by: str | None = None,
    ) -> None:
        with self.lock:
            issue = self._get(key)
            changes = []
            if summary is not None and summary != issue.summary:
                changes.append(_item("summary", None, issue.summary, None, summary))
                issue.summary = summary
            if description is not None:
                doc = adf(description) if isinstance(description, str) else description
                if doc != issue.description:
                    changes.append(_item("description", None, None, None, None))
                    issue.description = doc
            if changes:
                self._log_change(issue, by, changes)

    def add_remote_link(
        self,
        key: str,
        url: str,
        title: str | None = None,
        *,
        relationship: str | None = None,
        application: str | None = None,
        by: str | None = None,
    ) -> int:
        """Link the issue to an outside item, as a person (a web link) or an app such as
        the GitHub integration would. Jira records it in the changelog, which moves
        `updated`."""
        with self.lock:
            issue = self._get(key)
            link_id = self._create_remote_link(
                issue,
                {"url": url, "title": title or url},
                relationship=relationship,
                application={"type": application, "name": application} if application else None,
                by=by,
            )
            return link_id

    def link_issues(
        self, outward: str, inward: str, kind: str = "Blocks", *, by: str | None = None
    ) -> None:
        """`outward` <kind> `inward` ("OPS-1 blocks OPS-2"), as the web UI links issues; each
        side's changelog records it, which moves both issues' `updated`."""
        if kind not in LINK_TYPES:
            raise KeyError(f"no issue link type {kind!r}; one of {sorted(LINK_TYPES)}")
        with self.lock:
            a, b = self._get(outward), self._get(inward)
            link_id = str(next(self._link_ids))
            a.links.append((link_id, kind, True, b.key))
            b.links.append((link_id, kind, False, a.key))
            inward_phrase, outward_phrase = LINK_TYPES[kind]
            self._log_change(
                a, by, [_item("Link", None, None, b.key, f"This issue {outward_phrase} {b.key}")]
            )
            self._log_change(
                b, by, [_item("Link", None, None, a.key, f"This issue {inward_phrase} {a.key}")]
            )

    def remote_links(self, key: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(link) for link in self._get(key).remote_links]

    def issue(self, key: str) -> dict[str, Any]:
        """The issue as `GET /rest/api/3/issue/{key}` shows it."""
        with self.lock:
            return self._issue_json(self._get(key), list(ALL_FIELDS))

    def assignee(self, key: str) -> str | None:
        with self.lock:
            return self._get(key).assignee

    def history(self, key: str) -> list[dict[str, Any]]:
        with self.lock:
            return [self._history_json(h) for h in self._get(key).history]

    def set_rate_limit(self, remaining: int, reset_in: float = 3600.0) -> None:
        with self.lock:
            self._remaining = remaining
            self._reset = time.time() + reset_in

    @property
    def rate_remaining(self) -> int:
        with self.lock:
            return self._remaining

    # -- request pipeline ---------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        if not self._authenticated(request):
            return _error(
                401,
                "You are not authenticated. Authentication required to perform this operation.",
            ).response
        if time.time() >= self._reset:
            self._remaining, self._reset = self._rate_limit, time.time() + 3600
        if self._remaining <= 0:
            wait = max(1, int(self._reset - time.time()))
            reset = datetime.fromtimestamp(self._reset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return self._with_headers(
                Response(
                    429,
                    b"Rate limit exceeded.",
                    {
                        "content-type": "text/plain;charset=UTF-8",
                        "retry-after": str(wait),
                        "x-ratelimit-reset": reset,
                        "ratelimit-reason": "jira-quota-global-based",
                    },
                )
            )
        self._remaining -= 1
        try:
            response = self.dispatch(request)
        except HttpError as exc:
            response = exc.response
        return self._with_headers(response)

    def not_found(self, request: Request) -> Response:
        return _error(404, "null for uri: " + request.url).response

    def _authenticated(self, request: Request) -> bool:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(credential.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return False
        return decoded == f"{self.email}:{self.token}"

    def _with_headers(self, response: Response) -> Response:
        response.headers.update(
            {
                "x-ratelimit-limit": str(self._rate_limit),
                "x-ratelimit-remaining": str(max(0, self._remaining)),
                "x-arequestid": f"{self._random.getrandbits(64):016x}",
                "x-aaccountid": self.bot,
            }
        )
        if self._remaining < self._rate_limit // 5:
            response.headers["x-ratelimit-nearlimit"] = "true"
        return response

    # -- endpoints ----------------------------------------------------------------------
    def _search_get(self, request: Request) -> Response:
        fields = [f for value in request.query.get("fields", []) for f in value.split(",")]
        expand = request.arg("expand") or ""
        return self._search(
            request.arg("jql", "") or "",
            request.arg("nextPageToken"),
            request.arg("maxResults"),
            fields,
            expand,
        )

    def _search_post(self, request: Request) -> Response:
        data = _body(request)
        fields = data.get("fields") or []
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise _error(400, "The 'fields' field must be a list of strings.")
        max_results = data.get("maxResults")
        return self._search(
            str(data.get("jql") or ""),
            data.get("nextPageToken"),
            str(max_results) if max_results is not None else None,
            fields,
            str(data.get("expand") or ""),
        )

    def _search_retired(self, request: Request) -> Response:
        raise _error(
            410,
            "The requested API has been removed. Please migrate to the /rest/api/3/search/jql "
            "API. A full migration guideline is available at "
            "https://developer.atlassian.com/changelog/#CHANGE-2046",
        )

    def _search(
        self,
        jql: str,
        page_token: str | None,
        max_results: str | None,
        fields: list[str],
        expand: str,
    ) -> Response:
        query = self._parse(jql)
        if query.where is None:
            raise _error(
                400,
                "Unbounded JQL queries are not allowed here. Please add a search restriction "
                "to your query.",
            )
        fields = fields or ["id"]
        only_ids = set(fields) <= {"id", "key"}
        cap = MAX_RESULTS_IDS if only_ids else MAX_RESULTS
        try:
            size = min(cap, max(1, int(max_results))) if max_results is not None else 50
        except ValueError:
            raise _error(400, f"'{max_results}' is not a valid value for maxResults.") from None
        offset = self._page_offset(page_token, jql)
        visible_until = self._now() - timedelta(seconds=self.search_lag)
        found = [
            i
            for i in self._issues.values()
            if i.updated <= visible_until and query.where(self._record_of(i))
        ]
        found.sort(key=lambda i: i.id)  # the default order; a stable base for ORDER BY
        for name, descending in reversed(query.order):
            found.sort(key=functools.partial(_sort_key, name=name), reverse=descending)
        chunk = found[offset : offset + size]
        after = offset + len(chunk)
        body: dict[str, Any] = {
            "issues": [self._issue_json(i, fields, expand, in_search=True) for i in chunk],
        }
        if after < len(found):
            body["nextPageToken"] = _page_token(after, jql)
        body["isLast"] = after >= len(found)
        return json_response(200, body)

    def _get_issue(self, request: Request) -> Response:
        issue = self._find(request)
        fields = [f for value in request.query.get("fields", []) for f in value.split(",")]
        expand = request.arg("expand") or ""
        return json_response(200, self._issue_json(issue, fields or ["*all"], expand))

    def _put_assignee(self, request: Request) -> Response:
        issue = self._find(request)
        data = _body(request)
        if "accountId" not in data:
            raise _error(400, "accountId must be provided.")
        account = data["accountId"]
        if account == "-1":
            account = None  # the project's default assignee: nobody, in this emulator
        if account is not None:
            user = self._users.get(account) if isinstance(account, str) else None
            if user is None or not user.active:
                raise _error(400, assignee=f"User '{account}' cannot be assigned issues.")
        self._assign(issue, account, self.bot)
        return Response(204)

    def _get_changelog(self, request: Request) -> Response:
        issue = self._find(request)
        start = _int_arg(request, "startAt", 0)
        size = min(100, max(1, _int_arg(request, "maxResults", 100)))
        values = issue.history[start : start + size]
        url = f"{self.base_url}/rest/api/3/issue/{issue.key}/changelog"
        last = start + len(values) >= len(issue.history)
        body: dict[str, Any] = {
            "self": f"{url}?startAt={start}&maxResults={size}",
            "maxResults": size,
            "startAt": start,
            "total": len(issue.history),
            "isLast": last,
            "values": [self._history_json(h) for h in values],
        }
        if not last:
            body["nextPage"] = f"{url}?startAt={start + size}&maxResults={size}"
        return json_response(200, body)

    def _get_remote_links(self, request: Request) -> Response:
        issue = self._find(request)
        global_id = request.arg("globalId")
        if global_id is not None:
            found = [link for link in issue.remote_links if link.get("globalId") == global_id]
            if not found:
                raise _error(404, "No remote link with the given global ID was found.")
            return json_response(200, found[0])
        return json_response(200, issue.remote_links)

    def _post_remote_link(self, request: Request) -> Response:
        issue = self._find(request)
        data = _body(request)
        target = data.get("object")
        if (
            not isinstance(target, dict)
            or not isinstance(target.get("url"), str)
            or not isinstance(target.get("title"), str)
        ):
            raise _error(400, **{"object": "The remote object url and title are required."})
        relationship = data.get("relationship")
        application = data.get("application")
        global_id = data.get("globalId")
        for link in issue.remote_links:
            if global_id is not None and link.get("globalId") == global_id:
                # The same global id updates the existing link: 200, not 201.
                link["object"] = {**target, "icon": target.get("icon", {})}
                return json_response(200, {"id": link["id"], "self": link["self"]})
        link_id = self._create_remote_link(
            issue,
            target,
            relationship=relationship if isinstance(relationship, str) else None,
            application=application if isinstance(application, dict) else None,
            global_id=global_id if isinstance(global_id, str) else None,
            by=self.bot,
        )
        link = issue.remote_links[-1]
        return json_response(201, {"id": link_id, "self": link["self"]})

    def _create_remote_link(
        self,
        issue: _Issue,
        target: dict[str, Any],
        *,
        relationship: str | None,
        application: dict[str, Any] | None,
        by: str | None,
        global_id: str | None = None,
    ) -> int:
        link_id = next(self._link_ids)
        link: dict[str, Any] = {
            "id": link_id,
            "self": f"{self.base_url}/rest/api/3/issue/{issue.key}/remotelink/{link_id}",
        }
        if global_id is not None:
            link["globalId"] = global_id
        if application is not None:
            link["application"] = application
        if relationship is not None:
            link["relationship"] = relationship
        link["object"] = {**target, "icon": target.get("icon", {})}
        issue.remote_links.append(link)
        text = f'This issue links to "{target["title"]} (Web Link)"'
        self._log_change(issue, by, [_item("RemoteIssueLink", None, None, str(link_id), text)])
        return link_id

    def _get_comments(self, request: Request) -> Response:
        issue = self._find(request)
        order = request.arg("orderBy")
        if order not in (None, "created", "-created", "+created"):
            raise _error(400, "orderBy must be created.")
        start = _int_arg(request, "startAt", 0)
        size = min(5000, max(1, _int_arg(request, "maxResults", 5000)))
        found = sorted(issue.comments, key=lambda c: (c.created, int(c.id)))
        if order == "-created":
            found.reverse()
        return json_response(200, self._comments_page(issue, found, start, size))

    def _post_comment(self, request: Request) -> Response:
        issue = self._find(request)
        data = _body(request)
        body = data.get("body")
        if not isinstance(body, dict) or body.get("type") != "doc":
            raise _error(400, "Comment body can not be empty!")
        visibility = data.get("visibility")
        if visibility is not None and (
            not isinstance(visibility, dict)
            or visibility.get("type") not in ("role", "group")
            or not isinstance(visibility.get("value"), str)
        ):
            raise _error(400, "Visibility must name a role or a group.")
        comment = self._comment(issue, body, self.bot, visibility)
        return json_response(201, self._comment_json(issue, comment))

    def _comment(
        self, issue: _Issue, body: dict[str, Any], by: str, visibility: dict[str, str] | None
    ) -> _Comment:
        now = self._now()
        comment = _Comment(str(next(self._comment_ids)), by, body, now, now, visibility)
        issue.comments.append(comment)
        issue.updated = now
        return comment

    def _comments_page(
        self, issue: _Issue, comments: list[_Comment], start: int, size: int
    ) -> dict[str, Any]:
        return {
            "comments": [self._comment_json(issue, c) for c in comments[start : start + size]],
            "self": f"{self.base_url}/rest/api/3/issue/{issue.id}/comment",
            "maxResults": size,
            "total": len(comments),
            "startAt": start,
        }

    def _comment_json(self, issue: _Issue, comment: _Comment) -> dict[str, Any]:
        author = self._user_json(self._users[comment.author])
        data: dict[str, Any] = {
            "self": f"{self.base_url}/rest/api/3/issue/{issue.id}/comment/{comment.id}",
            "id": comment.id,
            "author": author,
            "body": comment.body,
            "updateAuthor": author,
            "created": self._stamp(comment.created),
            "updated": self._stamp(comment.updated),
            "jsdPublic": True,
        }
        if comment.visibility is not None:
            data["visibility"] = dict(comment.visibility)
        return data

    def _bulk_changelog(self, request: Request) -> Response:
        data = _body(request)
        wanted = data.get("issueIdsOrKeys")
        if (
            not isinstance(wanted, list)
            or not 1 <= len(wanted) <= 1000
            or not all(isinstance(w, str) for w in wanted)
        ):
            raise _error(400, "issueIdsOrKeys must list between 1 and 1000 issue ids or keys.")
        field_ids = data.get("fieldIds") or []
        if not isinstance(field_ids, list) or len(field_ids) > 10:
            raise _error(400, "fieldIds must list at most 10 field ids.")
        size = data.get("maxResults", 1000)
        if type(size) is not int or not 1 <= size <= 10_000:
            raise _error(400, "maxResults must be between 1 and 10000.")
        token = data.get("nextPageToken")
        offset = self._page_offset(token if isinstance(token, str) else None, "bulkfetch")
        by_id = {i.id: i for i in self._issues.values()}
        pairs: list[tuple[_Issue, _History]] = []
        for ref in dict.fromkeys(wanted):
            issue = self._issues.get(ref) or by_id.get(ref)
            if issue is None:
                continue
            for h in issue.history:
                items = [it for it in h.items if not field_ids or it["fieldId"] in field_ids]
                if items:
                    pairs.append((issue, _History(h.id, h.author, h.created, items)))
        chunk = pairs[offset : offset + size]
        logs: dict[str, list[dict[str, Any]]] = {}
        for issue, h in chunk:
            logs.setdefault(issue.id, []).append(self._history_json(h))
        body: dict[str, Any] = {
            "issueChangeLogs": [{"issueId": k, "changeHistories": v} for k, v in logs.items()]
        }
        if offset + len(chunk) < len(pairs):
            body["nextPageToken"] = _page_token(offset + len(chunk), "bulkfetch")
        return json_response(200, body)

    def _myself(self) -> dict[str, Any]:
        me = self._users[self.bot]
        return {
            **self._user_json(me, always_email=True),
            "locale": "en_US",
            "groups": {"size": 2, "items": []},
            "applicationRoles": {"size": 1, "items": []},
            "expand": "groups,applicationRoles",
        }

    def _user_search(self, request: Request) -> Response:
        query = (request.arg("query") or "").lower()
        account = request.arg("accountId")
        if not query and not account:
            raise _error(400, "One of 'query' or 'accountId' parameters must be provided.")
        start = _int_arg(request, "startAt", 0)
        size = min(1000, max(1, _int_arg(request, "maxResults", 50)))
        found = [
            u
            for u in self._users.values()
            if (account is not None and u.account_id == account)
            or (
                query
                and (
                    u.display_name.lower().startswith(query)
                    or (u.email_visible and (u.email or "").lower().startswith(query))
                )
            )
        ]
        return json_response(200, [self._user_json(u) for u in found[start : start + size]])

    # -- state helpers (callers hold the lock) ------------------------------------------
    def _now(self) -> datetime:
        now = self.clock().astimezone(UTC)
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    def _get(self, key: str) -> _Issue:
        issue = self._issues.get(key)
        if issue is None:
            raise KeyError(f"no issue {key} in the Jira emulator")
        return issue

    def _find(self, request: Request) -> _Issue:
        ref = request.params["key"]
        issue = self._issues.get(ref) or next(
            (i for i in self._issues.values() if i.id == ref), None
        )
        if issue is None:
            raise _error(404, "Issue does not exist or you do not have permission to see it.")
        return issue

    def _require_user(self, account: str | None) -> None:
        if account is not None and account not in self._users:
            raise KeyError(f"no user {account} in the Jira emulator; add_user() them first")

    def _assign(self, issue: _Issue, account: str | None, by: str | None) -> None:
        # Only a real change moves `updated` and leaves a changelog entry.
        if account == issue.assignee:
            return
        change = _item(
            "assignee",
            issue.assignee,
            self._name(issue.assignee),
            account,
            self._name(account),
        )
        issue.assignee = account
        self._log_change(issue, by, [change])

    def _log_change(self, issue: _Issue, by: str | None, items: list[dict[str, Any]]) -> None:
        now = self._now()
        issue.updated = now
        issue.history.append(_History(str(next(self._history_ids)), by or self.bot, now, items))

    def _name(self, account: str | None) -> str | None:
        return self._users[account].display_name if account in self._users else None

    def _parse(self, jql: str) -> Query:
        me = self._users[self.bot]
        try:
            return parse(jql, zone=_zone(me.time_zone), current_user=self.bot)
        except JqlError as exc:
            raise _error(400, str(exc)) from None

    def _page_offset(self, token: str | None, scope: str) -> int:
        if token is None:
            return 0
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode() + b"=="))
            if data["q"] != _scope_tag(scope) or type(data["o"]) is not int or data["o"] < 0:
                raise ValueError
            return int(data["o"])
        except (ValueError, KeyError, TypeError):
            raise _error(400, "The provided next page token is invalid or expired.") from None

    def _record_of(self, issue: _Issue) -> dict[str, Any]:
        return {
            "project": issue.project,
            "key": issue.key,
            "assignee": issue.assignee,
            "reporter": issue.reporter,
            "status": issue.status,
            "statusCategory": CATEGORIES[self._statuses[issue.status][1]][2],
            "updated": issue.updated,
            "created": issue.created,
        }

    # -- JSON shapes --------------------------------------------------------------------
    def _stamp(self, when: datetime) -> str:
        # As Jira writes it: milliseconds, and the offset of the API user's zone, no colon.
        local = when.astimezone(_zone(self._users[self.bot].time_zone))
        return (
            local.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{local.microsecond // 1000:03d}"
            + (local.strftime("%z"))
        )

    def _user_json(self, user: _User, *, always_email: bool = False) -> dict[str, Any]:
        initials = "".join(w[0] for w in user.display_name.split()[:2]).upper() or "U"
        avatar = f"{AVATARS}/initials/{initials}-{sum(map(ord, user.account_id)) % 6}.png"
        data: dict[str, Any] = {
            "self": f"{self.base_url}/rest/api/3/user?accountId={user.account_id}",
            "accountId": user.account_id,
            "accountType": "atlassian",
        }
        if user.email and (user.email_visible or always_email):
            data["emailAddress"] = user.email
        data["avatarUrls"] = {f"{n}x{n}": f"{avatar}?size={n}&s={n}" for n in (48, 24, 16, 32)}
        data["displayName"] = user.display_name
        data["active"] = user.active
        data["timeZone"] = user.time_zone
        return data

    def _status_json(self, name: str) -> dict[str, Any]:
        status_id, category = self._statuses[name]
        number, color, label = CATEGORIES[category]
        icon = "inprogress" if category == "indeterminate" else "generic"
        return {
            "self": f"{self.base_url}/rest/api/3/status/{status_id}",
            "description": "",
            "iconUrl": f"{self.base_url}/images/icons/statuses/{icon}.png",
            "name": name,
            "id": status_id,
            "statusCategory": {
                "self": f"{self.base_url}/rest/api/3/statuscategory/{number}",
                "id": number,
                "key": category,
                "colorName": color,
                "name": label,
            },
        }

    def _field(self, issue: _Issue, name: str) -> Any:
        user = self._users.get
        if name in ("assignee", "reporter", "creator"):
            account = issue.reporter if name == "creator" else getattr(issue, name)
            found = user(account) if account is not None else None
            return self._user_json(found) if found is not None else None
        if name == "status":
            return self._status_json(issue.status)
        if name in ("created", "updated"):
            return self._stamp(getattr(issue, name))
        if name == "project":
            p = self._projects[issue.project]
            return {
                "self": f"{self.base_url}/rest/api/3/project/{p.id}",
                "id": p.id,
                "key": p.key,
                "name": p.name,
                "projectTypeKey": "software",
                "simplified": False,
            }
        if name == "issuetype":
            return {
                "self": f"{self.base_url}/rest/api/3/issuetype/10001",
                "id": "10001",
                "description": "A small, distinct piece of work.",
                "name": "Task",
                "subtask": False,
                "hierarchyLevel": 0,
            }
        if name == "labels":
            return list(issue.labels)
        if name == "comment":
            return self._comments_page(issue, issue.comments, 0, 5000)
        if name == "issuelinks":
            return [self._issue_link_json(*link) for link in issue.links]
        if name == "components":
            p = self._projects[issue.project]
            return [
                {
                    "self": f"{self.base_url}/rest/api/3/component/{p.id}{i}",
                    "id": f"{p.id}{i}",
                    "name": component,
                }
                for i, component in enumerate(issue.components)
            ]
        return getattr(issue, name)

    def _issue_link_json(self, link_id: str, kind: str, outward: bool, key: str) -> dict[str, Any]:
        other = self._get(key)
        inward_phrase, outward_phrase = LINK_TYPES[kind]
        type_id = str(10_000 + sorted(LINK_TYPES).index(kind))
        return {
            "id": link_id,
            "self": f"{self.base_url}/rest/api/3/issueLink/{link_id}",
            "type": {
                "id": type_id,
                "name": kind,
                "inward": inward_phrase,
                "outward": outward_phrase,
                "self": f"{self.base_url}/rest/api/3/issueLinkType/{type_id}",
            },
            ("outwardIssue" if outward else "inwardIssue"): {
                "id": other.id,
                "key": other.key,
                "self": f"{self.base_url}/rest/api/3/issue/{other.id}",
                "fields": {
                    "summary": other.summary,
                    "status": self._status_json(other.status),
                },
            },
        }

    def _issue_json(
        self, issue: _Issue, fields: list[str], expand: str = "", *, in_search: bool = False
    ) -> dict[str, Any]:
        wanted: list[str] = []
        for f in fields:
            if f in ("*all", "*navigable"):
                wanted += [x for x in ALL_FIELDS if x not in wanted]
            elif f in ALL_FIELDS and f not in wanted:
                wanted.append(f)
        excluded = {f[1:] for f in fields if f.startswith("-")}
        wanted = [f for f in wanted if f not in excluded]
        if in_search and not wanted:
            # The search's default is ids only; "key" adds the key, still with no fields.
            bare = {"id": issue.id}
            if "key" in fields:
                bare |= {"self": f"{self.base_url}/rest/api/3/issue/{issue.id}", "key": issue.key}
            return bare
        data: dict[str, Any] = {
            "expand": ISSUE_EXPAND,
            "id": issue.id,
            "self": f"{self.base_url}/rest/api/3/issue/{issue.id}",
            "key": issue.key,
            "fields": {name: self._field(issue, name) for name in wanted},
        }
        if "changelog" in expand.split(","):
            data["changelog"] = {
                "startAt": 0,
                "maxResults": len(issue.history),
                "total": len(issue.history),
                "histories": [self._history_json(h) for h in issue.history],
            }
        return data

    def _history_json(self, history: _History) -> dict[str, Any]:
        author = self._users.get(history.author) if history.author else None
        data: dict[str, Any] = {"id": history.id}
        if author is not None:
            data["author"] = self._user_json(author)
        data["created"] = self._stamp(history.created)
        data["items"] = [dict(i) for i in history.items]
        return data


def _item(
    name: str, old: str | None, old_text: str | None, new: str | None, new_text: str | None
) -> dict[str, Any]:
    # Jira writes null where a side had no value (an unassigned issue, text fields' ids).
    return {
        "field": name,
        "fieldtype": "jira",
        "fieldId": name,
        "from": old,
        "fromString": old_text,
        "to": new,
        "toString": new_text,
    }


def _sort_key(issue: _Issue, name: str) -> Any:
    if name == "key":
        project, _, number = issue.key.rpartition("-")
        return (project, int(number))
    value: datetime = getattr(issue, name)
    return value


def _scope_tag(scope: str) -> str:
    # Ties a token to the query it pages through, as Jira refuses a token used with another.
    return hashlib.sha256(scope.encode()).hexdigest()[:12]


def _page_token(offset: int, scope: str) -> str:
    raw = json.dumps({"o": offset, "q": _scope_tag(scope)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _zone(name: str) -> tzinfo:
    return UTC if name in ("UTC", "Etc/UTC") else ZoneInfo(name)


def _int_arg(request: Request, name: str, default: int) -> int:
    try:
        return int(request.arg(name) or default)
    except ValueError:
        raise _error(400, f"'{request.arg(name)}' is not a valid value for {name}.") from None


def _body(request: Request) -> dict[str, Any]:
    try:
        data = request.json() if request.body else {}
    except ValueError:
        raise _error(400, "Unexpected character in the request body: not JSON.") from None
    if not isinstance(data, dict):
        raise _error(400, "The request body must be a JSON object.")
    return data
