"""GitHub for the benchmark: one repository per source on one emulator.

The emulator is syncd.sandbox.github's, answering with the same bytes, headers, links and
ETags. The subclass here changes three things that matter only at benchmark scale:

* The host's virtual clock (see bench.tools.base.VirtualClock). With the wall clock,
  25,000 seeded issues would all carry the same `updated_at` and every `since` query would
  return them; in a real repository two edits rarely share a second.
* An index of issues by (updated_at, number), kept current on every edit, so the listing
  syncd asks for (sort=updated, direction=asc, since=...) costs the emulator time in
  proportion to what it returns, as on GitHub, instead of a sort of the whole repository per
  page. Other listings are memoised until the next edit. Without this the emulator's own
  O(N) work per request would be measured as syncd's.
* Counters of owner writes, and of writes that changed nothing (redundant writes).
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import tools
from bench.dataset import Change, Layout
from bench.tools.base import Kind, Tool, VirtualClock
from syncd.crossref import github_issue_keys, github_key
from syncd.http import ApiClient
from syncd.models import Observation
from syncd.sandbox.github import DEFAULT_TOKEN, GitHubEmulator, _Issue, _Repo
from syncd.sandbox.server import Request, Response, json_response

TOKEN_ENV = "SYNCD_BENCH_GITHUB_TOKEN"  # noqa: S105 - the name of a variable, not a secret
_HANDLE = re.compile(r"^gh-user(\d+)$")
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def repo_name(source: int) -> str:
    return f"bench/repo-{source}"


def handle(person: int) -> str:
    return f"gh-user{person:02d}"


def reference(source: int, number: int) -> str:
    return f"{repo_name(source)}#{number}"


def key(source: int, number: int) -> str:
    return github_key(repo_name(source), number)


# -- emulator side -------------------------------------------------------------------------


class BenchGitHubEmulator(GitHubEmulator):
    def __init__(self, clock: VirtualClock) -> None:
        # The benchmark counts requests rather than running out of them: a budget that a
        # 100,000-item run cannot spend (GitHub's is 5,000 an hour; see the README).
        super().__init__(clock=clock, rate_limit=10**9)
        self.writes = 0
        self.redundant = 0
        self._repo_of_issue: dict[int, str] = {}  # issue id -> lower-cased repo name
        self._by_updated: dict[str, list[tuple[datetime, int]]] = {}
        self._stale_index = True
        self._version = 0  # bumped by every edit; memoised listings older than it are stale
        self._memo: dict[tuple[Any, ...], tuple[int, list[_Issue]]] = {}

    # -- bulk seeding, without the per-issue cost of the control API ----------------------
    def seed_repo(self, full_name: str, items: list[tuple[str, str, list[str], bool]]) -> None:
        """Add issues (title, body, assignees, closed) numbered 1.. to a new repository."""
        with self.lock:
            repo = self._repos[full_name.lower()]
            for number, (title, body, assignees, closed) in enumerate(items, start=1):
                now = self._now()
                issue = _Issue(number, next(self._ids), title, body, "octocat", now, now)
                issue.assignees = assignees
                if closed:
                    issue.state, issue.state_reason = "closed", "completed"
                    issue.closed_at, issue.closed_by = now, "octocat"
                repo.issues[number] = issue
                self._repo_of_issue[issue.id] = full_name.lower()
            self._stale_index = True
            self._version += 1

    # -- keeping the index current ---------------------------------------------------------
    def _touch(self, issue: _Issue) -> None:
        name = self._repo_of_issue.get(issue.id)
        keys = self._by_updated.get(name) if name and not self._stale_index else None
        if keys is not None:
            old = bisect.bisect_left(keys, (issue.updated_at, issue.number))
            if old < len(keys) and keys[old] == (issue.updated_at, issue.number):
                del keys[old]
        super()._touch(issue)
        if keys is not None:
            bisect.insort(keys, (issue.updated_at, issue.number))
        else:
            self._stale_index = True
        self._version += 1

    def _create(self, *args: Any, **kwargs: Any) -> int:
        number = super()._create(*args, **kwargs)
        self._stale_index = True
        self._version += 1
        return number

    def _index(self, repo: _Repo) -> list[tuple[datetime, int]]:
        if self._stale_index:
            self._by_updated = {
                name: sorted((i.updated_at, i.number) for i in r.issues.values())
                for name, r in self._repos.items()
            }
            self._repo_of_issue = {
                i.id: name for name, r in self._repos.items() for i in r.issues.values()
            }
            self._stale_index = False
        return self._by_updated[repo.full_name.lower()]

    # -- listings --------------------------------------------------------------------------
    def _list_issues(self, request: Request) -> Response:
        repo = self._repo_of(request)
        state = request.arg("state", "open")
        sort = request.arg("sort", "created")
        direction = request.arg("direction", "desc")
        if (
            state not in ("open", "closed", "all")
            or sort not in ("created", "updated", "comments")
            or direction not in ("asc", "desc")
            or request.arg("assignee") is not None
            or request.arg("creator") is not None
        ):
            return super()._list_issues(request)  # errors and filters: the reference code
        since = self._since(request.arg("since"))
        per_page = min(100, max(1, _int(request.arg("per_page"), 30)))
        page = max(1, _int(request.arg("page"), 1))
        if sort == "updated" and direction == "asc" and state == "all":
            # syncd's listing: a slice of the index from `since` (inclusive, as GitHub's).
            keys = self._index(repo)
            start = bisect.bisect_left(keys, (since,)) if since is not None else 0
            total = len(keys) - start
            lo = start + (page - 1) * per_page
            chunk = [repo.issues[n] for _, n in keys[lo : min(lo + per_page, len(keys))]]
        else:
            items = self._listing(repo, state, sort, direction, since)
            total = len(items)
            chunk = items[(page - 1) * per_page : page * per_page]
        last = max(1, math.ceil(total / per_page))
        link = self._link(repo, request, page, last)
        return json_response(
            200,
            [self._issue_json(repo, i, single=False) for i in chunk],
            {"link": link} if link else None,
        )

    def _listing(
        self, repo: _Repo, state: str, sort: str, direction: str, since: datetime | None
    ) -> list[_Issue]:
        memo_key = (repo.id, state, sort, direction, since)
        hit = self._memo.get(memo_key)
        if hit is not None and hit[0] == self._version:
            return hit[1]

        def order(i: _Issue) -> tuple[Any, int]:
            primary = {"created": i.created_at, "updated": i.updated_at, "comments": i.comments}
            return primary[sort], i.number

        items = sorted(
            (
                i
                for i in repo.issues.values()
                if (state == "all" or i.state == state) and (since is None or i.updated_at >= since)
            ),
            key=order,
            reverse=direction == "desc",
        )
        if len(self._memo) > 16:
            self._memo.clear()
        self._memo[memo_key] = (self._version, items)
        return items

    # -- counting owner writes -------------------------------------------------------------
    def _counted(self, request: Request, respond: Any) -> Response:
        issue = self._find(request)[1]
        before = list(issue.assignees)
        response: Response = respond(request)
        self.writes += 1
        self.redundant += issue.assignees == before
        return response

    def _add_assignees(self, request: Request) -> Response:
        return self._counted(request, super()._add_assignees)

    def _remove_assignees(self, request: Request) -> Response:
        return self._counted(request, super()._remove_assignees)

    def _update_issue(self, request: Request) -> Response:
        body = request.body
        if b'"assignee' in body:
            return self._counted(request, super()._update_issue)
        return super()._update_issue(request)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


class GitHubTool(Tool[BenchGitHubEmulator]):
    kind = "github"

    def __init__(self, clock: VirtualClock) -> None:
        self.emulator = BenchGitHubEmulator(clock)
        self.layout: Layout | None = None

    def seed(self, layout: Layout) -> None:
        self.layout = layout
        people = [handle(p) for p in range(layout.people)]
        for s in layout.sources_of(self.kind):
            # octocat files the seeded issues; as a collaborator its "Tracked in" lines
            # declare (a stranger's would only mention, see adapters/github.py).
            self.emulator.add_repo(repo_name(s), collaborators=[*people, "octocat"])
            anchor_kind = layout.kinds[0]
            items = []
            for i in range(1, layout.counts[s] + 1):
                anchor = tools.reference(anchor_kind, 0, i) if layout.linked(s, i) else None
                owner = layout.owner(s, i)
                items.append(
                    (
                        layout.title(s, i),
                        layout.body(s, i, anchor),
                        [handle(owner)] if owner is not None else [],
                        layout.closed(s, i),
                    )
                )
            self.emulator.seed_repo(repo_name(s), items)

    def apply(self, change: Change) -> None:
        assert self.layout is not None, "seed() first"
        repo, n = repo_name(change.source), change.number
        e = self.emulator
        if change.field == "owner":
            person = change.person or 0
            if self.owner(change.source, n) == person:
                person = (person + 1) % self.layout.people
            e.set_assignees(repo, n, [handle(person)])
        elif change.field == "title":
            title = f"{self.layout.title(change.source, n)} (edit {change.round})"
            e.edit_issue(repo, n, title=title)
        elif e.issue(repo, n)["state"] == "open":
            e.close_issue(repo, n)
        else:
            e.reopen_issue(repo, n)

    def owner(self, source: int, number: int) -> int | None:
        with self.emulator.lock:
            _, issue = self.emulator._get(repo_name(source), number)
            match = _HANDLE.match(issue.assignees[0]) if issue.assignees else None
        return int(match.group(1)) if match else None


# -- benchmark side ------------------------------------------------------------------------


class GitHubKind(Kind):
    kind = "github"
    env = {TOKEN_ENV: DEFAULT_TOKEN}

    def handle(self, person: int) -> str:
        return handle(person)

    def source_table(self, layout: Layout, source: int, info: dict[str, Any]) -> dict[str, Any]:
        return {
            "repo": repo_name(source),
            "base_url": info["base_url"],
            "token": {"env": TOKEN_ENV},
            "per_page": 100,
            "write_spacing": 0,  # GitHub asks for 1 s between writes; loopback needs none
        }

    def observation(self, layout: Layout, source: int, number: int, name: str) -> Observation:
        repo = repo_name(source)
        owner = layout.owner(source, number)
        keys = github_issue_keys(repo, number)
        linked = layout.linked(source, number)
        return Observation(
            source=name,
            ref=f"{repo}#{number}",
            url=f"https://github.com/{repo}/issues/{number}",
            title=layout.title(source, number),
            state="done" if layout.closed(source, number) else "open",
            owners=(handle(owner),) if owner is not None else (),
            updated_at=_EPOCH + timedelta(seconds=number),
            requester="octocat",
            keys=keys,
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
                service="github",
                source=f"peer-{source}",
                base_url=info["base_url"],
                headers={
                    "Authorization": f"Bearer {DEFAULT_TOKEN}",
                    "Accept": "application/vnd.github+json",
                },
            )
        before = Counter(client.counts)
        repo = repo_name(source)
        params = {"state": "open", "sort": "created", "direction": "asc", "per_page": "100"}
        response = client.request("GET", f"repos/{repo}/issues", params=params)
        fetched = differ = 0
        while True:
            for raw in client.json(response):
                if "pull_request" in raw:
                    continue
                ref = f"{repo}#{raw['number']}"
                value = (
                    tuple(a["login"] for a in raw["assignees"]),
                    raw["state"],
                    raw["title"],
                )
                fetched += 1
                if snapshot.get(ref) != value:
                    differ += 1
                    snapshot[ref] = value
            url = response.links.get("next", {}).get("url")
            if url is None:
                break
            response = client.request("GET", url)
        return fetched, differ, Counter(client.counts) - before


TOOL = GitHubTool
KIND = GitHubKind
