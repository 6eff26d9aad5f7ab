"""Jira Cloud for the benchmark: one project per source on one emulator.

The emulator is syncd.sandbox.jira's, with the same answers. As for GitHub, the subclass
changes only what matters at benchmark scale:

* The host's virtual clock, 61 seconds per reading, so two edits never fall inside the
  adapter's one-minute overlap: a quiet project then answers its one search with at most
  the item at the bookmark, as a real project edited now and then does.
* An index of each project's issues by `updated`, so the search syncd sends
  (`(project = X) AND updated >= <ms> ORDER BY updated ASC, key ASC`) costs the emulator
  time in proportion to what it returns; the reference code evaluates the JQL against every
  issue of every project for every page. The bulk changelog is answered from the issues it
  names rather than from a map of all issues built per request.
* Counters of assignee writes and of those that changed nothing.
"""

from __future__ import annotations

import bisect
import re
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import tools
from bench.dataset import Change, Layout
from bench.tools.base import Kind, Tool, VirtualClock
from syncd.http import ApiClient
from syncd.models import Observation
from syncd.sandbox.jira import (
    DEFAULT_EMAIL,
    DEFAULT_TOKEN,
    MAX_RESULTS,
    MAX_RESULTS_IDS,
    JiraEmulator,
    _Issue,
    _page_token,
    _sort_key,
    _User,
    adf,
)
from syncd.sandbox.server import Request, Response, json_response

TOKEN_ENV = "SYNCD_BENCH_JIRA_TOKEN"  # noqa: S105 - the name of a variable, not a secret
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SEARCH = re.compile(
    r"\(project = (?P<project>[A-Z][A-Z0-9]*)\) AND updated >= (?P<ms>-?\d+) "
    r"ORDER BY updated ASC, key ASC"
)


def project(source: int) -> str:
    return f"P{source}"


def handle(person: int) -> str:
    """A Cloud accountId, fixed so that both processes know it without asking."""
    return f"712020:{uuid.UUID(int=person + 1, version=4)}"


def reference(source: int, number: int) -> str:
    return f"{project(source)}-{number}"


def key(source: int, number: int) -> str:
    return f"jira:{project(source)}-{number}"


# -- emulator side -------------------------------------------------------------------------


class BenchJiraEmulator(JiraEmulator):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(clock=clock, rate_limit=10**9)
        self.writes = 0
        self.redundant = 0
        # project -> sorted (updated, number); None until first needed after a bulk change
        self._by_updated: dict[str, list[tuple[datetime, int]]] | None = None
        # Other searches (the peer's): the reference result, kept until the next edit.
        self._version = 0
        self._memo: dict[str, tuple[int, list[_Issue]]] = {}

    def _number(self, issue: _Issue) -> int:
        return int(issue.key.rpartition("-")[2])

    def _index(self) -> dict[str, list[tuple[datetime, int]]]:
        if self._by_updated is None:
            index: dict[str, list[tuple[datetime, int]]] = {}
            for issue in self._issues.values():
                index.setdefault(issue.project, []).append((issue.updated, self._number(issue)))
            for keys in index.values():
                keys.sort()
            self._by_updated = index
        return self._by_updated

    def create_issue(self, *args: Any, **kwargs: Any) -> str:
        with self.lock:
            self._by_updated = None
            self._version += 1
            return super().create_issue(*args, **kwargs)

    def _log_change(self, issue: _Issue, by: str | None, items: list[dict[str, Any]]) -> None:
        keys = self._index().get(issue.project)
        old = (issue.updated, self._number(issue))
        super()._log_change(issue, by, items)
        self._version += 1
        if keys is not None:
            at = bisect.bisect_left(keys, old)
            if at < len(keys) and keys[at] == old:
                del keys[at]
            bisect.insort(keys, (issue.updated, self._number(issue)))

    def _search(
        self,
        jql: str,
        page_token: str | None,
        max_results: str | None,
        fields: list[str],
        expand: str,
    ) -> Response:
        try:
            size_wanted = int(max_results) if max_results is not None else 50
        except ValueError:
            size_wanted = -1
        if size_wanted < 0 or self.search_lag:
            return super()._search(jql, page_token, max_results, fields, expand)
        fields = fields or ["id"]
        cap = MAX_RESULTS_IDS if set(fields) <= {"id", "key"} else MAX_RESULTS
        size = min(cap, max(1, size_wanted))
        offset = self._page_offset(page_token, jql)
        match = _SEARCH.fullmatch(jql)
        if match is not None:
            name = match["project"]
            keys = self._index().get(name, [])
            since = _EPOCH + timedelta(milliseconds=int(match["ms"]))
            start = bisect.bisect_left(keys, (since,))
            total = len(keys) - start
            lo = start + offset
            chunk = [self._issues[f"{name}-{n}"] for _, n in keys[lo : lo + size]]
        else:
            found = self._found(jql)
            total = len(found)
            chunk = found[offset : offset + size]
        after = offset + len(chunk)
        body: dict[str, Any] = {
            "issues": [self._issue_json(i, fields, expand, in_search=True) for i in chunk],
        }
        if after < total:
            body["nextPageToken"] = _page_token(after, jql)
        body["isLast"] = after >= total
        return json_response(200, body)

    def _found(self, jql: str) -> list[_Issue]:
        """What the reference search finds for `jql`, in its order; memoised until an edit."""
        hit = self._memo.get(jql)
        if hit is not None and hit[0] == self._version:
            return hit[1]
        query = self._parse(jql)
        if query.where is None:
            # Unbounded: let the reference refuse it with its own words.
            super()._search(jql, None, None, [], "")
        where = query.where
        assert where is not None
        found = [i for i in self._issues.values() if where(self._record_of(i))]
        found.sort(key=lambda i: i.id)
        for field_name, descending in reversed(query.order):
            found.sort(key=lambda i: _sort_key(i, field_name), reverse=descending)
        if len(self._memo) > 16:
            self._memo.clear()
        self._memo[jql] = (self._version, found)
        return found

    def _bulk_changelog(self, request: Request) -> Response:
        # The reference builds a map of every issue by id for each request; hand it only the
        # issues named (by key, as syncd names them) and answer exactly as it would.
        try:
            wanted = request.json().get("issueIdsOrKeys")
            named = {r: self._issues[r] for r in wanted if r in self._issues}
        except (ValueError, AttributeError, TypeError):
            return super()._bulk_changelog(request)
        if len(named) != len(set(wanted)):
            return super()._bulk_changelog(request)  # ids among them: the reference path
        everything = self._issues
        self._issues = named
        try:
            return super()._bulk_changelog(request)
        finally:
            self._issues = everything

    def _put_assignee(self, request: Request) -> Response:
        issue = self._find(request)
        before = issue.assignee
        response = super()._put_assignee(request)
        self.writes += 1
        self.redundant += issue.assignee == before
        return response


class JiraTool(Tool[BenchJiraEmulator]):
    kind = "jira"

    def __init__(self, clock: VirtualClock) -> None:
        self.emulator = BenchJiraEmulator(clock)
        self.layout: Layout | None = None
        self._person: dict[str, int] = {}

    def seed(self, layout: Layout) -> None:
        self.layout = layout
        e = self.emulator
        with e.lock:
            for p in range(layout.people):
                account = handle(p)
                e._users[account] = _User(account, f"Bench Person {p:02d}", None, False)
                self._person[account] = p
        for s in layout.sources_of(self.kind):
            e.add_project(project(s))
            for i in range(1, layout.counts[s] + 1):
                linked = layout.linked(s, i)
                anchor = tools.reference(layout.kinds[0], 0, i) if linked else None
                owner = layout.owner(s, i)
                issue_key = e.create_issue(
                    project(s),
                    layout.title(s, i),
                    adf(layout.body(s, i, anchor)),
                    assignee=handle(owner) if owner is not None else None,
                )
                if layout.closed(s, i):
                    e._issues[issue_key].status = "Done"  # created done: no changelog entry

    def apply(self, change: Change) -> None:
        assert self.layout is not None, "seed() first"
        issue_key = reference(change.source, change.number)
        e = self.emulator
        if change.field == "owner":
            person = change.person or 0
            if self.owner(change.source, change.number) == person:
                person = (person + 1) % self.layout.people
            e.set_assignee(issue_key, handle(person))
        elif change.field == "title":
            title = f"{self.layout.title(change.source, change.number)} (edit {change.round})"
            e.edit_issue(issue_key, summary=title)
        else:
            done = e.issue(issue_key)["fields"]["status"]["name"] == "Done"
            e.transition(issue_key, "To Do" if done else "Done")

    def owner(self, source: int, number: int) -> int | None:
        account = self.emulator.assignee(reference(source, number))
        return self._person.get(account) if account is not None else None


# -- benchmark side ------------------------------------------------------------------------


class JiraKind(Kind):
    kind = "jira"
    env = {TOKEN_ENV: DEFAULT_TOKEN}

    def handle(self, person: int) -> str:
        return handle(person)

    def source_table(self, layout: Layout, source: int, info: dict[str, Any]) -> dict[str, Any]:
        return {
            "base_url": info["base_url"],
            "email": DEFAULT_EMAIL,
            "token": {"env": TOKEN_ENV},
            "jql": f"project = {project(source)}",
        }

    def observation(self, layout: Layout, source: int, number: int, name: str) -> Observation:
        owner = layout.owner(source, number)
        issue_key = reference(source, number)
        linked = layout.linked(source, number)
        return Observation(
            source=name,
            ref=issue_key,
            url=f"https://bench.atlassian.net/browse/{issue_key}",
            title=layout.title(source, number),
            state="done" if layout.closed(source, number) else "open",
            owners=(handle(owner),) if owner is not None else (),
            updated_at=_EPOCH + timedelta(days=19_000, seconds=number),
            requester=handle(0),
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
                service="jira",
                source=f"peer-{source}",
                base_url=info["base_url"],
                auth=(DEFAULT_EMAIL, DEFAULT_TOKEN),
            )
        before = Counter(client.counts)
        # What a one-way puller asks: every open issue of the project, page after page.
        params = {
            "jql": f"project = {project(source)} AND statusCategory != Done ORDER BY key ASC",
            "fields": "summary,status,assignee",
            "maxResults": "100",
        }
        fetched = differ = 0
        while True:
            data = client.json(client.request("GET", "rest/api/3/search/jql", params=params))
            for raw in data["issues"]:
                f = raw["fields"]
                assignee = f["assignee"]["accountId"] if f["assignee"] else None
                value = (assignee, f["status"]["name"], f["summary"])
                fetched += 1
                if snapshot.get(raw["key"]) != value:
                    differ += 1
                    snapshot[raw["key"]] = value
            if data.get("isLast", True):
                break
            params["nextPageToken"] = data["nextPageToken"]
        return fetched, differ, Counter(client.counts) - before


TOOL = JiraTool
KIND = JiraKind
