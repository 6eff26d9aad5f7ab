"""A stateful GitHub REST emulator, laid out like GitHub Enterprise Server (`/api/v3`).

It serves the issue, assignee, rate-limit and user endpoints syncd uses, in the shapes the
real API produces (the contract test checks them against GitHub's own description), with
the behaviours an adapter has to cope with: Link pagination through /repositories/{id},
an inclusive `since`, pull requests in the issue list, non-collaborator assignees silently
ignored by the assignees endpoint, weak ETags whose 304s cost no rate limit, and a primary
rate limit that runs out.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote, urlencode

from syncd.http import TraceWriter
from syncd.sandbox.server import Emulator, HttpError, Request, Response, json_response

# The emulator's own credential: it guards nothing but a loopback test server.
DEFAULT_TOKEN = "sandbox-github-token"  # noqa: S105
DOCS_URL = "https://docs.github.com/rest"
RATE_DOCS_URL = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
MAX_ASSIGNEES = 10
CLOSE_REASONS = ("completed", "not_planned")

Clock = Callable[[], datetime]


def _node_id(kind: str, number: int) -> str:
    # GitHub's legacy global ids: base64 of "0<len(kind)>:<kind><id>", e.g. "MDU6SXNzdWUx".
    return base64.b64encode(f"0{len(kind)}:{kind}{number}".encode()).decode()


def _ts(when: datetime | None) -> str | None:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else None


def _error(status: int, message: str, **extra: Any) -> HttpError:
    # Real error bodies carry the status as a string since 2024.
    body = {"message": message, **extra, "documentation_url": DOCS_URL, "status": str(status)}
    return HttpError(json_response(status, body))


def _invalid(field_name: str, value: Any = None, code: str = "invalid") -> HttpError:
    error: dict[str, Any] = {"resource": "Issue", "field": field_name, "code": code}
    if value is not None:
        error["value"] = value
    return _error(422, "Validation Failed", errors=[error])


def _not_a(value: Any, field_name: str, kind: str) -> HttpError:
    # GitHub's wording when a body fails its JSON schema check.
    return _error(
        422, f"Invalid request.\n\nFor 'properties/{field_name}', {value!r} is not {kind}."
    )


@dataclass
class _Issue:
    number: int
    id: int
    title: str
    body: str | None
    user: str
    created_at: datetime
    updated_at: datetime
    state: str = "open"
    state_reason: str | None = None
    assignees: list[str] = field(default_factory=list)
    comments: int = 0
    closed_at: datetime | None = None
    closed_by: str | None = None
    pull_request: bool = False
    draft: bool = False
    labels: list[str] = field(default_factory=list)
    events: list[_Event] = field(default_factory=list)


@dataclass
class _Event:
    """An issue event (only `assigned` and `unassigned` are recorded here)."""

    id: int
    event: str
    actor: str
    assignee: str
    created_at: datetime


@dataclass
class _Comment:
    id: int
    number: int  # the issue's
    user: str
    body: str
    created_at: datetime
    updated_at: datetime


@dataclass
class _Repo:
    full_name: str
    id: int
    collaborators: set[str]
    issues: dict[int, _Issue] = field(default_factory=dict)
    comments: list[_Comment] = field(default_factory=list)
    owner: str = ""  # the login before the slash: author_association OWNER
    members: set[str] = field(default_factory=set)  # of the owning organisation


class GitHubEmulator(Emulator):
    service = "github"
    prefix = "/api/v3"
    server_name = "GitHub.com"

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        login: str = "syncd-bot",
        clock: Clock | None = None,
        trace: TraceWriter | None = None,
        rate_limit: int = 5000,
    ) -> None:
        super().__init__(trace=trace)
        self.token = token
        self.login = login  # the token's user: the author of issues created over the API
        # Data timestamps come from here; a test may swap it for a fake at any time.
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self._users: dict[str, int] = {}
        self._repos: dict[str, _Repo] = {}  # lower-cased full name -> repo; names ignore case
        self._ids = itertools.count(3_100_000_001)  # issue ids are global, past 2**31 now
        self._event_ids = itertools.count(17_000_000_001)
        self._comment_ids = itertools.count(2_500_000_001)
        self.actor = login  # who API writes are made by: the token's user
        self._request_ids = itertools.count(1)
        # The rate limit runs on the wall clock, not `clock`: a client waits in real time.
        self._rate_limit = rate_limit
        self._remaining = rate_limit
        self._reset = int(time.time()) + 3600
        self.add_user(login)

        issues, issue = "/repos/{owner}/{repo}/issues", "/repos/{owner}/{repo}/issues/{number:\\d+}"
        self.route("GET", issues, self._list_issues)
        self.route("GET", "/repositories/{repo_id:\\d+}/issues", self._list_issues)
        self.route("POST", issues, self._create_issue)
        self.route("GET", issue, lambda r: json_response(200, self._issue_json(*self._find(r))))
        self.route("PATCH", issue, self._update_issue)
        self.route("POST", issue + "/assignees", self._add_assignees)
        self.route("DELETE", issue + "/assignees", self._remove_assignees)
        self.route("GET", issue + "/events", self._list_events)
        self.route("GET", issue + "/comments", self._list_comments)
        self.route("POST", issue + "/comments", self._create_comment)
        self.route("GET", "/repos/{owner}/{repo}/issues/comments", self._list_comments)
        self.route("GET", "/rate_limit", self._rate_limit_overview)
        self.route("GET", "/user", lambda r: json_response(200, self._private_user(self.login)))

    # -- control API (tests, demo) -----------------------------------------------------
    def add_user(self, login: str) -> int:
        with self.lock:
            return self._users.setdefault(login, 5_000_001 + len(self._users))

    def add_repo(
        self, full_name: str, collaborators: Iterable[str] = (), members: Iterable[str] = ()
    ) -> int:
        """Create the repo (or add collaborators to it); collaborators have push access.
        `members` belong to the owning organisation (author_association MEMBER)."""
        with self.lock:
            repo = self._repos.get(full_name.lower())
            if repo is None:
                repo = _Repo(full_name, 700_000_001 + len(self._repos), set(),
                             owner=full_name.split("/")[0])  # fmt: skip
                self._repos[full_name.lower()] = repo
            for login in collaborators:
                self.add_user(login)
                repo.collaborators.add(login)
            for login in members:
                self.add_user(login)
                repo.members.add(login)
            return repo.id

    def create_issue(
        self,
        repo: str,
        title: str,
        body: str = "",
        *,
        assignees: Iterable[str] = (),
        user: str = "octocat",
        state: str = "open",
        labels: Iterable[str] = (),
    ) -> int:
        number = self._create(repo, title, body, assignees, user, state)
        if labels:
            self.set_labels(repo, number, labels)
        return number

    def set_labels(self, repo: str, number: int, labels: Iterable[str]) -> None:
        """Replace the issue's labels, as someone in the web UI would."""
        with self.lock:
            issue = self._get(repo, number)[1]
            issue.labels = list(dict.fromkeys(labels))
            self._touch(issue)

    def create_pull_request(
        self,
        repo: str,
        title: str,
        body: str = "",
        *,
        assignees: Iterable[str] = (),
        user: str = "octocat",
        state: str = "open",
        draft: bool = False,
    ) -> int:
        """A PR shares the issue numbering and shows up in the issue list."""
        return self._create(repo, title, body, assignees, user, state, pull=True, draft=draft)

    def set_assignees(
        self, repo: str, number: int, logins: Iterable[str], by: str = "octocat"
    ) -> None:
        """Replace the assignees, as `by` would in the web UI; only collaborators."""
        with self.lock:
            r, issue = self._get(repo, number)
            self._assign(r, issue, self._assignable(r, logins, strict=True), by)

    def add_comment(self, repo: str, number: int, body: str, user: str = "octocat") -> int:
        """`user` comments on the issue; returns the comment id."""
        with self.lock:
            r, issue = self._get(repo, number)
            return self._comment(r, issue, body, user).id

    def edit_comment(self, repo: str, comment_id: int, body: str) -> None:
        """The comment's author (or a maintainer) edits it: new body, new updated_at."""
        with self.lock:
            comment = next(c for c in self._repos[repo.lower()].comments if c.id == comment_id)
            comment.body, comment.updated_at = body, self._now()

    def comments(self, repo: str, number: int) -> list[dict[str, Any]]:
        """The issue's comments as the API shows them, oldest first."""
        with self.lock:
            r, _ = self._get(repo, number)
            return [self._comment_json(r, c) for c in r.comments if c.number == number]

    def close_issue(
        self, repo: str, number: int, reason: str = "completed", by: str = "octocat"
    ) -> None:
        with self.lock:
            self._set_state(self._get(repo, number)[1], "closed", reason, by)

    def reopen_issue(self, repo: str, number: int) -> None:
        with self.lock:
            self._set_state(self._get(repo, number)[1], "open", None, None)

    def edit_issue(
        self, repo: str, number: int, *, title: str | None = None, body: str | None = None
    ) -> None:
        with self.lock:
            issue = self._get(repo, number)[1]
            changed = False
            if title is not None and title != issue.title:
                issue.title, changed = title, True
            if body is not None and (body or None) != issue.body:
                issue.body, changed = body or None, True
            if changed:
                self._touch(issue)

    def comment(self, repo: str, number: int) -> None:
        """Someone commented: only the count and updated_at change, not the owner."""
        self.add_comment(repo, number, "+1")

    def issue(self, repo: str, number: int) -> dict[str, Any]:
        """The issue as `GET /repos/{o}/{r}/issues/{n}` would show it."""
        with self.lock:
            return self._issue_json(*self._get(repo, number))

    def set_rate_limit(self, remaining: int, reset_in: float = 3600.0) -> None:
        with self.lock:
            self._remaining = remaining
            self._reset = int(time.time() + reset_in)

    @property
    def rate_remaining(self) -> int:
        with self.lock:
            return self._remaining

    # -- request pipeline ---------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token") or credential.strip() != self.token:
            return self._with_headers(request, _error(401, "Bad credentials").response)
        if time.time() >= self._reset:
            self._remaining, self._reset = self._rate_limit, int(time.time()) + 3600
        free = request.path == "/rate_limit"  # documented as not counting against the limit
        if not free and self._remaining <= 0:
            message = f"API rate limit exceeded for user ID {self._users[self.login]}."
            body = {"message": message, "documentation_url": RATE_DOCS_URL}
            return self._with_headers(request, json_response(403, body))
        try:
            response = self.dispatch(request)
        except HttpError as exc:
            response = exc.response
        if request.method == "GET" and response.status == 200:
            response = self._conditional(request, response)
        if not free and response.status != 304:
            self._remaining -= 1
        return self._with_headers(request, response)

    def not_found(self, request: Request) -> Response:
        return _error(404, "Not Found").response

    def _conditional(self, request: Request, response: Response) -> Response:
        etag = f'W/"{hashlib.sha256(response.body).hexdigest()}"'
        cache = {"etag": etag, "cache-control": "private, max-age=60, s-maxage=60"}
        response.headers.update(cache)
        wanted = {
            t.strip().removeprefix("W/")
            for t in request.headers.get("if-none-match", "").split(",")
        }
        if etag.removeprefix("W/") in wanted or "*" in wanted:
            return Response(304, b"", cache)
        return response

    def _with_headers(self, request: Request, response: Response) -> Response:
        response.headers.update(
            {
                # Real GitHub dates every answer; clients use it to judge GitHub's clock
                # against the updated_at stamps, which come from the same clock here.
                "date": format_datetime(self.clock().astimezone(UTC), usegmt=True),
                "x-ratelimit-limit": str(self._rate_limit),
                "x-ratelimit-remaining": str(self._remaining),
                "x-ratelimit-used": str(self._rate_limit - self._remaining),
                "x-ratelimit-reset": str(self._reset),
                "x-ratelimit-resource": "core",
                "x-github-media-type": "github.v3; format=json",
                "x-github-api-version-selected": request.headers.get(
                    "x-github-api-version", "2022-11-28"
                ),
                "x-github-request-id": f"5A1D:{next(self._request_ids):06X}",
                "vary": "Accept, Authorization, Cookie, X-GitHub-OTP",
            }
        )
        return response

    # -- endpoints ----------------------------------------------------------------------
    def _list_issues(self, request: Request) -> Response:
        repo = self._repo_of(request)
        state = request.arg("state", "open")
        sort = request.arg("sort", "created")
        direction = request.arg("direction", "desc")
        for name, value, allowed in (
            ("state", state, ("open", "closed", "all")),
            ("sort", sort, ("created", "updated", "comments")),
            ("direction", direction, ("asc", "desc")),
        ):
            if value not in allowed:
                raise _invalid(name, value)
        since = self._since(request.arg("since"))
        assignee, creator = request.arg("assignee"), request.arg("creator")
        per_page = min(100, max(1, _int(request.arg("per_page"), 30)))
        page = max(1, _int(request.arg("page"), 1))

        def wanted(i: _Issue) -> bool:
            return (
                (state == "all" or i.state == state)
                and (since is None or i.updated_at >= since)  # inclusive, as GitHub is
                and (creator is None or i.user == creator)
                and (
                    assignee is None
                    or (assignee == "none" and not i.assignees)
                    or (assignee == "*" and bool(i.assignees))
                    or assignee in i.assignees
                )
            )

        def key(i: _Issue) -> tuple[Any, int]:
            primary = {"created": i.created_at, "updated": i.updated_at, "comments": i.comments}
            return primary[sort or "created"], i.number  # the number keeps pages stable

        items = sorted(filter(wanted, repo.issues.values()), key=key, reverse=direction == "desc")
        last = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        link = self._link(repo, request, page, last)
        return json_response(
            200,
            [self._issue_json(repo, i, single=False) for i in chunk],
            {"link": link} if link else None,
        )

    def _link(self, repo: _Repo, request: Request, page: int, last: int) -> str | None:
        # GitHub pages issues through /repositories/{id}/issues.
        return link_header(f"{self.base_url}/repositories/{repo.id}/issues", request, page, last)

    def _create_issue(self, request: Request) -> Response:
        repo = self._repo_of(request)
        data = _body(request)
        title = data.get("title")
        if title is None or title == "":
            raise _invalid("title", code="missing_field")
        if not isinstance(title, str):
            raise _not_a(title, "title", "a string")
        body = _optional_str(data, "body")
        assignees = _logins(data, "assignees") or []
        if data.get("assignee"):
            assignees.append(str(data["assignee"]))
        self._require_assignable(repo, assignees)
        number = self._create(repo.full_name, title, body or "", assignees, self.login, "open")
        issue = repo.issues[number]
        url = self._issue_json(repo, issue)["url"]
        return json_response(201, self._issue_json(repo, issue), {"location": url})

    def _update_issue(self, request: Request) -> Response:
        repo, issue = self._find(request)
        data = _body(request)
        changed = False
        if "title" in data:
            if not isinstance(data["title"], str) or not data["title"]:
                raise _not_a(data["title"], "title", "a string")
            changed |= data["title"] != issue.title
            issue.title = data["title"]
        if "body" in data:
            body = _optional_str(data, "body") or None
            changed |= body != issue.body
            issue.body = body
        if "assignees" in data or "assignee" in data:
            logins = _logins(data, "assignees")
            if logins is None:
                logins = [x] if (x := _optional_str(data, "assignee")) else []
            self._require_assignable(repo, logins)
            self._assign(repo, issue, logins, self.actor)
        state, reason = data.get("state"), data.get("state_reason")
        if state is not None and state not in ("open", "closed"):
            raise _invalid("state", state)
        if reason is not None and reason not in (*CLOSE_REASONS, "reopened"):
            raise _invalid("state_reason", reason)
        if reason == "reopened" and state == "closed":
            raise _invalid("state_reason", reason)
        if state == "closed" or (issue.state == "closed" and reason in CLOSE_REASONS):
            self._set_state(issue, "closed", reason or "completed", self.login)
        elif state == "open":
            self._set_state(issue, "open", None, None)
        if changed:
            self._touch(issue)
        return json_response(200, self._issue_json(repo, issue))

    def _add_assignees(self, request: Request) -> Response:
        repo, issue = self._find(request)
        wanted = _logins(_body(request), "assignees") or []
        # Unlike PATCH, this endpoint drops logins that cannot be assigned, without a word.
        added = [x for x in self._assignable(repo, wanted) if x not in issue.assignees]
        self._assign(repo, issue, (issue.assignees + added)[:MAX_ASSIGNEES], self.actor)
        return json_response(201, self._issue_json(repo, issue))

    def _remove_assignees(self, request: Request) -> Response:
        repo, issue = self._find(request)
        gone = set(_logins(_body(request), "assignees") or [])
        self._assign(repo, issue, [x for x in issue.assignees if x not in gone], self.actor)
        return json_response(200, self._issue_json(repo, issue))

    def _paged(self, request: Request, items: list[Any]) -> Response:
        """One page of `items` (already JSON), with GitHub's Link header for the rest."""
        per_page = min(100, max(1, _int(request.arg("per_page"), 30)))
        page = max(1, _int(request.arg("page"), 1))
        last = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        link = link_header(f"{self.base_url}{request.path}", request, page, last)
        return json_response(200, chunk, {"link": link} if link else None)

    def _list_events(self, request: Request) -> Response:
        repo, issue = self._find(request)
        return self._paged(request, [self._event_json(repo, issue, e) for e in issue.events])

    def _list_comments(self, request: Request) -> Response:
        repo = self._repo_of(request)
        number = request.params.get("number")
        if number is not None:
            self._find(request)
        since = self._since(request.arg("since"))
        sort = request.arg("sort", "created")
        direction = request.arg("direction", "asc")
        if sort not in ("created", "updated"):
            raise _invalid("sort", sort)
        if direction not in ("asc", "desc"):
            raise _invalid("direction", direction)
        found = [
            c
            for c in repo.comments
            if (number is None or c.number == int(number))
            and (since is None or c.updated_at >= since)  # inclusive, as for issues
        ]
        # The per-issue list is always oldest first; the repository's follows sort/direction.
        if number is None:
            found.sort(
                key=lambda c: (c.created_at if sort == "created" else c.updated_at, c.id),
                reverse=direction == "desc",
            )
        return self._paged(request, [self._comment_json(repo, c) for c in found])

    def _create_comment(self, request: Request) -> Response:
        repo, issue = self._find(request)
        body = _body(request).get("body")
        if not isinstance(body, str) or not body:
            raise _invalid("body", code="missing_field")
        comment = self._comment(repo, issue, body, self.actor)
        data = self._comment_json(repo, comment)
        return json_response(201, data, {"location": data["url"]})

    def _rate_limit_overview(self, request: Request) -> Response:
        def bucket(resource: str, limit: int, remaining: int) -> dict[str, Any]:
            used = limit - remaining
            return {"limit": limit, "remaining": remaining, "reset": self._reset, "used": used,
                    "resource": resource}  # fmt: skip

        core = bucket("core", self._rate_limit, self._remaining)
        resources = {
            "core": core,
            "search": bucket("search", 30, 30),
            "graphql": bucket("graphql", 5000, 5000),
            "integration_manifest": bucket("integration_manifest", 5000, 5000),
            "code_search": bucket("code_search", 10, 10),
        }
        return json_response(200, {"resources": resources, "rate": core})

    # -- state helpers (callers hold the lock) ------------------------------------------
    def _now(self) -> datetime:
        return self.clock().astimezone(UTC).replace(microsecond=0)

    def _touch(self, issue: _Issue) -> None:
        issue.updated_at = self._now()

    def _get(self, repo: str, number: int) -> tuple[_Repo, _Issue]:
        r = self._repos.get(repo.lower())
        if r is None or number not in r.issues:
            raise KeyError(f"no issue {repo}#{number} in the GitHub emulator")
        return r, r.issues[number]

    def _repo_of(self, request: Request) -> _Repo:
        p = request.params
        if "repo_id" in p:
            repo = next((r for r in self._repos.values() if str(r.id) == p["repo_id"]), None)
        else:
            repo = self._repos.get(f"{p['owner']}/{p['repo']}".lower())
        if repo is None:
            raise _error(404, "Not Found")
        return repo

    def _find(self, request: Request) -> tuple[_Repo, _Issue]:
        repo = self._repo_of(request)
        issue = repo.issues.get(int(request.params["number"]))
        if issue is None:
            raise _error(404, "Not Found")
        return repo, issue

    def _create(
        self,
        repo: str,
        title: str,
        body: str,
        assignees: Iterable[str],
        user: str,
        state: str,
        *,
        pull: bool = False,
        draft: bool = False,
    ) -> int:
        with self.lock:
            r = self._repos.get(repo.lower())
            if r is None:
                raise KeyError(f"no repo {repo} in the GitHub emulator; add_repo() it first")
            self.add_user(user)
            now = self._now()
            number = max(r.issues, default=0) + 1
            issue = _Issue(number, next(self._ids), title, body or None, user, now, now,
                           pull_request=pull, draft=draft)  # fmt: skip
            issue.assignees = self._assignable(r, assignees, strict=True)[:MAX_ASSIGNEES]
            issue.events = [
                _Event(next(self._event_ids), "assigned", user, login, now)
                for login in issue.assignees
            ]
            r.issues[number] = issue
            if state == "closed":
                self._set_state(issue, "closed", "completed", user)
            return number

    def _assignable(self, repo: _Repo, logins: Iterable[str], strict: bool = False) -> list[str]:
        out: list[str] = []
        for login in logins:
            if login in repo.collaborators:
                if login not in out:
                    out.append(login)
            elif strict:
                raise ValueError(f"{login} is not a collaborator of {repo.full_name}")
        return out

    def _require_assignable(self, repo: _Repo, logins: list[str]) -> None:
        # Create and PATCH reject a login that cannot be assigned, naming it.
        for login in logins:
            if login not in repo.collaborators:
                raise _invalid("assignees", login)

    def _assign(self, repo: _Repo, issue: _Issue, logins: list[str], by: str) -> None:
        # Only a real change moves updated_at, so a no-op write is not seen as an edit.
        logins = logins[:MAX_ASSIGNEES]
        if logins != issue.assignees:
            now = self._now()
            for gone in (x for x in issue.assignees if x not in logins):
                issue.events.append(_Event(next(self._event_ids), "unassigned", by, gone, now))
            for new in (x for x in logins if x not in issue.assignees):
                issue.events.append(_Event(next(self._event_ids), "assigned", by, new, now))
            issue.assignees = logins
            self._touch(issue)

    def _comment(self, repo: _Repo, issue: _Issue, body: str, user: str) -> _Comment:
        self.add_user(user)
        now = self._now()
        comment = _Comment(next(self._comment_ids), issue.number, user, body, now, now)
        repo.comments.append(comment)
        issue.comments += 1
        self._touch(issue)  # as on GitHub: a comment moves the issue's updated_at
        return comment

    def _set_state(self, issue: _Issue, state: str, reason: str | None, by: str | None) -> None:
        if state == "closed":
            if reason not in CLOSE_REASONS:
                raise ValueError(f"close reason must be one of {CLOSE_REASONS}, not {reason!r}")
            if issue.state == "closed" and issue.state_reason == reason:
                return
            if issue.state != "closed":
                issue.closed_at, issue.closed_by = self._now(), by
            issue.state, issue.state_reason = "closed", reason
        elif issue.state == "closed":
            issue.state, issue.state_reason = "open", "reopened"
            issue.closed_at = issue.closed_by = None
        else:
            return
        self._touch(issue)

    def _since(self, value: str | None) -> datetime | None:
        if value is None:
            return None
        try:
            since = datetime.fromisoformat(value)
        except ValueError:
            raise _invalid("since", value) from None
        return since if since.tzinfo else since.replace(tzinfo=UTC)

    # -- JSON shapes --------------------------------------------------------------------
    @property
    def _web(self) -> str:
        # GitHub Enterprise serves the web UI on the same host, without /api/v3.
        return f"http://127.0.0.1:{self.port}"

    def _user_json(self, login: str) -> dict[str, Any]:
        uid = self.add_user(login)
        url = f"{self.base_url}/users/{login}"
        return {
            "login": login,
            "id": uid,
            "node_id": _node_id("User", uid),
            "avatar_url": f"{self._web}/avatars/u/{uid}?v=4",
            "gravatar_id": "",
            "url": url,
            "html_url": f"{self._web}/{login}",
            "followers_url": f"{url}/followers",
            "following_url": f"{url}/following{{/other_user}}",
            "gists_url": f"{url}/gists{{/gist_id}}",
            "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{url}/subscriptions",
            "organizations_url": f"{url}/orgs",
            "repos_url": f"{url}/repos",
            "events_url": f"{url}/events{{/privacy}}",
            "received_events_url": f"{url}/received_events",
            "type": "User",
            "user_view_type": "public",
            "site_admin": False,
        }

    def _private_user(self, login: str) -> dict[str, Any]:
        stamp = "2021-03-02T09:15:27Z"
        return {
            **self._user_json(login),
            "name": None,
            "company": None,
            "blog": "",
            "location": None,
            "email": None,
            "hireable": None,
            "bio": None,
            "twitter_username": None,
            "public_repos": 0,
            "public_gists": 0,
            "followers": 0,
            "following": 0,
            "created_at": stamp,
            "updated_at": stamp,
            "private_gists": 0,
            "total_private_repos": 0,
            "owned_private_repos": 0,
            "disk_usage": 0,
            "collaborators": 0,
            "two_factor_authentication": True,
            "plan": {
                "name": "free",
                "space": 976562499,
                "collaborators": 0,
                "private_repos": 10000,
            },
        }

    def _label_json(self, repo: _Repo, name: str) -> dict[str, Any]:
        digest = hashlib.blake2b(f"{repo.full_name}/{name}".encode(), digest_size=3).digest()
        label_id = 208_000_001 + int.from_bytes(digest)
        return {
            "id": label_id,
            "node_id": _node_id("Label", label_id),
            "url": f"{self.base_url}/repos/{repo.full_name}/labels/{quote(name)}",
            "name": name,
            "description": None,
            "color": "ededed",
            "default": False,
        }

    def _association(self, repo: _Repo, login: str) -> str:
        """author_association as GitHub computes it, for the cases the emulator models."""
        if login.lower() == repo.owner.lower():
            return "OWNER"
        if login in repo.members:
            return "MEMBER"
        # The token's user writes assignees, so it has push access: a collaborator.
        return "COLLABORATOR" if login in repo.collaborators or login == self.login else "NONE"

    def _event_json(self, repo: _Repo, issue: _Issue, event: _Event) -> dict[str, Any]:
        return {
            "id": event.id,
            "node_id": _node_id("AssignedEvent", event.id),
            "url": f"{self.base_url}/repos/{repo.full_name}/issues/events/{event.id}",
            "actor": self._user_json(event.actor),
            "event": event.event,
            "commit_id": None,
            "commit_url": None,
            "created_at": _ts(event.created_at),
            "assignee": self._user_json(event.assignee),
            "assigner": self._user_json(event.actor),
            "performed_via_github_app": None,
        }

    def _comment_json(self, repo: _Repo, comment: _Comment) -> dict[str, Any]:
        api = f"{self.base_url}/repos/{repo.full_name}"
        url = f"{api}/issues/comments/{comment.id}"
        return {
            "url": url,
            "html_url": f"{self._web}/{repo.full_name}/issues/{comment.number}"
            f"#issuecomment-{comment.id}",
            "issue_url": f"{api}/issues/{comment.number}",
            "id": comment.id,
            "node_id": _node_id("IssueComment", comment.id),
            "user": self._user_json(comment.user),
            "created_at": _ts(comment.created_at),
            "updated_at": _ts(comment.updated_at),
            "author_association": self._association(repo, comment.user),
            "body": comment.body,
            "reactions": {
                "url": f"{url}/reactions",
                "total_count": 0,
                **dict.fromkeys(
                    ("+1", "-1", "laugh", "hooray", "confused", "heart", "rocket", "eyes"), 0
                ),
            },
            "performed_via_github_app": None,
        }

    def _issue_json(self, repo: _Repo, issue: _Issue, *, single: bool = True) -> dict[str, Any]:
        api = f"{self.base_url}/repos/{repo.full_name}"
        url = f"{api}/issues/{issue.number}"
        web = f"{self._web}/{repo.full_name}/{'pull' if issue.pull_request else 'issues'}"
        assignees = [self._user_json(login) for login in issue.assignees]
        author = self._association(repo, issue.user)
        data: dict[str, Any] = {
            "url": url,
            "repository_url": api,
            "labels_url": f"{url}/labels{{/name}}",
            "comments_url": f"{url}/comments",
            "events_url": f"{url}/events",
            "html_url": f"{web}/{issue.number}",
            "id": issue.id,
            "node_id": _node_id("PullRequest" if issue.pull_request else "Issue", issue.id),
            "number": issue.number,
            "title": issue.title,
            "user": self._user_json(issue.user),
            "labels": [self._label_json(repo, name) for name in issue.labels],
            "state": issue.state,
            "locked": False,
            "assignee": assignees[0] if assignees else None,
            "assignees": assignees,
            "milestone": None,
            "comments": issue.comments,
            "created_at": _ts(issue.created_at),
            "updated_at": _ts(issue.updated_at),
            "closed_at": _ts(issue.closed_at),
            "author_association": author,
            "active_lock_reason": None,
        }
        if issue.pull_request:
            pull = f"{api}/pulls/{issue.number}"
            data["draft"] = issue.draft
            data["pull_request"] = {
                "url": pull,
                "html_url": f"{web}/{issue.number}",
                "diff_url": f"{web}/{issue.number}.diff",
                "patch_url": f"{web}/{issue.number}.patch",
                "merged_at": None,
            }
        data["body"] = issue.body
        if single:  # the list endpoint leaves closed_by out; single-issue answers carry it
            data["closed_by"] = self._user_json(issue.closed_by) if issue.closed_by else None
        data["reactions"] = {
            "url": f"{url}/reactions",
            "total_count": 0,
            **dict.fromkeys(
                ("+1", "-1", "laugh", "hooray", "confused", "heart", "rocket", "eyes"), 0
            ),
        }
        data["timeline_url"] = f"{url}/timeline"
        data["performed_via_github_app"] = None
        data["state_reason"] = issue.state_reason
        return data


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default  # GitHub ignores a paging parameter it cannot read


def _body(request: Request) -> dict[str, Any]:
    try:
        data = request.json() if request.body else {}
    except ValueError:
        raise HttpError(
            json_response(400, {"message": "Problems parsing JSON", "documentation_url": DOCS_URL})
        ) from None
    if not isinstance(data, dict):
        raise _error(422, f"Invalid request.\n\n{data!r} is not an object.")
    return data


def _optional_str(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise _not_a(value, name, "a string")
    return value


def _logins(data: dict[str, Any], name: str) -> list[str] | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise _not_a(value, name, "an array of strings")
    return list(value)


def link_header(base: str, request: Request, page: int, last: int) -> str | None:
    """GitHub's Link header for page `page` of `last` at `base`, keeping every other
    parameter, in the order prev, next, last, first."""
    kept = [(k, v) for k, values in request.query.items() if k != "page" for v in values]
    rels = [("prev", page - 1)] if page > 1 else []
    if page < last:
        rels += [("next", page + 1), ("last", last)]
    if page > 1:
        rels.append(("first", 1))
    return (
        ", ".join(
            f'<{base}?{urlencode([*kept, ("page", str(n))])}>; rel="{rel}"' for rel, n in rels
        )
        or None
    )
