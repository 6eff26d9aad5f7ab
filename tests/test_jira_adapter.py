"""The Jira adapter against a respx router standing in for a Jira Cloud site (and a Data
Center one): request shapes, paging, the no-change cost, owner change times, rate limits,
errors, secrets and hostile issues."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from pydantic import ValidationError

from syncd.adapters import adapter_class
from syncd.adapters.jira import JiraAdapter, JiraConfig, build_jql
from syncd.adapters.jira_adf import adf_text
from syncd.adapters.jira_changelog import owner_change_time
from syncd.errors import FatalError, MalformedResponse, RateLimited, RetriableError, SourceError
from syncd.http import HttpOptions, TraceWriter
from syncd.models import Handoff, Observation, Page
from syncd.sandbox.jira import adf as adf_doc
from tests.contract_errata import corrected_checker

SITE = "https://acme.atlassian.net"
SEARCH = "/rest/api/3/search/jql"
BULK = "/rest/api/3/changelog/bulkfetch"
EMAIL = "syncd-bot@acme.example"
TOKEN = "ATATT3xFfGF0unitTestJiraToken0123456789"
ALICE = "5b10ac8d82e05b22cc7d4ef5"
BOB = "712020:3f1c7e9a-2b4d-4e6f-8a1b-9c0d2e3f4a5b"
CAROL = "712020:0c2d4e6f-8a1b-4c3d-9e5f-7a6b5c4d3e2f"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
T0 = "2024-05-01T11:50:00.000+0000"
T1 = "2024-05-01T11:55:00.000+0000"
HANDOFF = Handoff("REQ-1", "Printer", "bob", "Bob", "alice", "Alice", "operator")
CONTRACT = Path(__file__).resolve().parents[2] / "shared" / "contract" / "check_traffic.py"


def ms(stamp: str) -> int:
    when = datetime.fromisoformat(stamp)
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def user(account: str, name: str = "Someone") -> dict[str, Any]:
    return {
        "self": f"{SITE}/rest/api/3/user?accountId={account}",
        "accountId": account,
        "accountType": "atlassian",
        "avatarUrls": {"48x48": "https://avatar.example/a.png"},
        "displayName": name,
        "active": True,
        "timeZone": "Europe/Paris",
    }


def status(name: str = "To Do", category: str = "new") -> dict[str, Any]:
    return {
        "self": f"{SITE}/rest/api/3/status/1",
        "name": name,
        "id": "1",
        "statusCategory": {"self": f"{SITE}/rest/api/3/statuscategory/2", "id": 2, "key": category},
    }


def issue(
    key: str,
    updated: str = T0,
    *,
    assignee: str | None = None,
    summary: str | None = None,
    description: Any = None,
    status_name: str = "To Do",
    category: str = "new",
    issue_id: str | None = None,
    created: str = "2024-04-01T09:00:00.000+0200",
    **fields: Any,
) -> dict[str, Any]:
    number = key.rsplit("-", 1)[1]
    return {
        "expand": "renderedFields,names,schema,operations,editmeta,changelog",
        "id": issue_id or str(10000 + int(number)),
        "self": f"{SITE}/rest/api/3/issue/{10000 + int(number)}",
        "key": key,
        "fields": {
            "summary": summary if summary is not None else f"Issue {key}",
            "status": status(status_name, category),
            "assignee": user(assignee) if assignee else None,
            "reporter": user("557058:reporter"),
            "description": description,
            "created": created,
            "updated": updated,
            **fields,
        },
    }


def results(*issues: Any, token: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"issues": list(issues)}
    if token is not None:
        body["nextPageToken"] = token
    body["isLast"] = token is None
    return httpx.Response(200, json=body, headers={"x-ratelimit-remaining": "950"})


def histories(*logs: tuple[str, list[tuple[str, str | None]]], token: str | None = None) -> Any:
    """A bulkfetch answer: (issue id, [(created, new assignee)])."""
    body: dict[str, Any] = {
        "issueChangeLogs": [
            {
                "issueId": issue_id,
                "changeHistories": [
                    {
                        "id": str(20000 + i),
                        "created": created,
                        "items": [
                            {
                                "field": "assignee",
                                "fieldtype": "jira",
                                "fieldId": "assignee",
                                "from": None,
                                "to": to,
                            }
                        ],
                    }
                    for i, (created, to) in enumerate(changes)
                ],
            }
            for issue_id, changes in logs
        ]
    }
    if token is not None:
        body["nextPageToken"] = token
    return httpx.Response(200, json=body)


@pytest.fixture
def router() -> respx.Router:
    router = respx.Router(base_url=SITE, assert_all_called=False)
    # Each changed issue's remote links are read; none unless a test says otherwise (by
    # name: respx answers with the first route that matches).
    router.get(url__regex=r"/rest/api/[23]/issue/[^/]+/remotelink$", name="remotelinks").mock(
        return_value=httpx.Response(200, json=[])
    )
    return router


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_config(monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> JiraConfig:
    monkeypatch.setenv("SYNCD_TEST_JIRA_TOKEN", TOKEN)
    doc: dict[str, Any] = {
        "name": "ops",
        "type": "jira",
        "base_url": SITE,
        "email": EMAIL,
        "token": {"env": "SYNCD_TEST_JIRA_TOKEN"},
        "jql": "project = OPS",
        **overrides,
    }
    config = JiraConfig.model_validate(doc)
    config.resolve_secrets()
    return config


@pytest.fixture
def make(
    monkeypatch: pytest.MonkeyPatch, router: respx.Router, sleeps: list[float]
) -> Iterator[Any]:
    made: list[JiraAdapter] = []

    def build(trace: TraceWriter | None = None, **overrides: Any) -> JiraAdapter:
        options = HttpOptions(
            sleep=sleeps.append, transport=httpx.MockTransport(router.handler), trace=trace
        )
        adapter = JiraAdapter(make_config(monkeypatch, **overrides), options)
        adapter.clock = lambda: NOW
        made.append(adapter)
        return adapter

    yield build
    for adapter in made:
        adapter.close()


def pull(adapter: JiraAdapter, cursor: dict[str, Any] | None = None) -> list[Page]:
    return list(adapter.pull(cursor))


def observations(pages: list[Page]) -> list[Observation]:
    return [o for p in pages for o in p.observations]


def query(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}


# -- registry and config -------------------------------------------------------------------


def test_registered_under_jira() -> None:
    assert adapter_class("jira") is JiraAdapter


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"email": None}, "needs email"),
        ({"flavor": "datacenter"}, "drop email"),
        ({"base_url": "http://jira.example.com"}, "use https"),
        ({"base_url": "https://acme.atlassian.net/rest/api/3"}, "without /rest/api"),
        ({"base_url": "https://u:p@acme.atlassian.net"}, "credentials"),
        ({"jql": "project = OPS ORDER BY created DESC"}, "ORDER BY"),
        ({"jql": "project = OPS\x00"}, "control characters"),
        ({"states": {"category:sideways": "open"}}, "unknown category"),
        ({"overlap": "2h"}, "between 0s and 1h"),
        ({"page_size": 500}, "page_size"),
        ({"flavor": "server"}, "flavor"),
        ({"token": "inline-secret"}, "not read inline"),
    ],
)
def test_config_rejects(
    monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        make_config(monkeypatch, **overrides)


def test_config_defaults_and_datacenter(monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(monkeypatch, jql="", base_url="https://jira.example.com/")
    assert config.flavor == "cloud"
    assert config.base_url == "https://jira.example.com"
    assert (config.overlap, config.settle) == (timedelta(minutes=1), timedelta(seconds=30))
    dc = make_config(monkeypatch, flavor="datacenter", email=None)
    assert dc.flavor == "datacenter"
    local = make_config(monkeypatch, base_url="http://127.0.0.1:8080")
    assert local.base_url == "http://127.0.0.1:8080"


# -- request shapes ------------------------------------------------------------------------


def test_jql_window_in_epoch_milliseconds_oldest_first() -> None:
    assert build_jql("project = OPS", 1714564800000) == (
        "(project = OPS) AND updated >= 1714564800000 ORDER BY updated ASC, key ASC"
    )
    assert build_jql("", 0) == "updated >= 0 ORDER BY updated ASC, key ASC"


def test_first_search_request_shape(make: Any, router: respx.Router) -> None:
    route = router.get(SEARCH).mock(return_value=results())
    assert observations(pull(make())) == []
    request = route.calls.last.request
    assert query(request) == {
        "jql": "(project = OPS) AND updated >= 0 ORDER BY updated ASC, key ASC",
        "maxResults": "100",
        "fields": "summary,status,assignee,reporter,description,created,updated,labels,"
        "components,comment,issuelinks,parent,subtasks",
    }
    expected = base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert request.headers["accept"] == "application/json"


def test_search_reaches_back_overlap_before_the_bookmark(make: Any, router: respx.Router) -> None:
    route = router.get(SEARCH).mock(return_value=results())
    pull(make(overlap="90s"), {"updated": 1_714_564_800_000, "seen": {}})
    assert "updated >= 1714564710000 " in query(route.calls.last.request)["jql"]


def test_datacenter_searches_v2_with_start_at_and_bearer(make: Any, router: respx.Router) -> None:
    dc = issue("OPS-1", T0, assignee=None)
    dc["fields"]["assignee"] = {"name": "alice", "key": "JIRAUSER10100", "displayName": "A"}
    dc["fields"]["description"] = "Plain wiki text about OPS-2"
    first = {"startAt": 0, "maxResults": 1, "total": 2, "issues": [dc]}
    second = {"startAt": 1, "maxResults": 1, "total": 2, "issues": [issue("OPS-3", T1)]}
    second["issues"][0]["fields"]["reporter"] = None
    route = router.get("/rest/api/2/search").mock(
        side_effect=[httpx.Response(200, json=first), httpx.Response(200, json=second)]
    )
    adapter = make(flavor="datacenter", email=None)
    found = observations(pull(adapter))
    assert [o.ref for o in found] == ["OPS-1", "OPS-3"]
    assert found[0].owners == ("alice",)
    assert found[0].mentions == ("jira:OPS-2",)
    requests = [c.request for c in route.calls]
    assert [query(r)["startAt"] for r in requests] == ["0", "1"]
    assert query(requests[0])["expand"] == "changelog"
    assert requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    # The history came inline: Data Center makes no changelog requests; each changed
    # issue's remote links are one request.
    assert adapter.request_counts() == {"GET 200": 4}
    links = router.routes["remotelinks"].calls
    assert [c.request.url.path for c in links] == [
        "/rest/api/2/issue/OPS-1/remotelink",
        "/rest/api/2/issue/OPS-3/remotelink",
    ]


def test_issue_maps_to_an_observation(make: Any, router: respx.Router) -> None:
    doc = {
        "type": "doc",
        "version": 1,
        "content": [
            {
                "type": "paragraph",
                "content": [
                    {"type": "text", "text": "Backend: "},
                    {
                        "type": "text",
                        "text": "the API bug",
                        "marks": [
                            {
                                "type": "link",
                                "attrs": {"href": "https://github.com/acme/api/issues/12"},
                            }
                        ],
                    },
                ],
            },
            {"type": "blockCard", "attrs": {"url": "https://trello.com/c/AbCd1234/7-printer"}},
        ],
    }
    router.get(SEARCH).mock(
        return_value=results(
            issue(
                "OPS-7",
                T0,
                assignee=ALICE,
                summary="Printer on fire, see REQ-3",
                description=doc,
                status_name="In Progress",
                category="indeterminate",
            )
        )
    )
    router.post(BULK).mock(return_value=histories())
    (obs,) = observations(pull(make()))
    assert obs.source == "ops"
    assert obs.ref == "OPS-7"
    assert obs.url == f"{SITE}/browse/OPS-7"
    assert obs.title == "Printer on fire, see REQ-3"
    assert obs.state == "in_progress"
    assert obs.owners == (ALICE,)
    assert obs.requester == "557058:reporter"
    assert obs.updated_at == datetime(2024, 5, 1, 11, 50, tzinfo=UTC)
    assert obs.keys == ("jira:OPS-7",)
    assert obs.mentions == ("req:3", "github:acme/api#12", "trello:AbCd1234")


def test_results_are_followed_by_page_token_and_streamed(make: Any, router: respx.Router) -> None:
    route = router.get(SEARCH).mock(
        side_effect=[
            results(issue("OPS-1", T0), token="tok-2"),
            results(issue("OPS-2", T1)),
        ]
    )
    router.post(BULK).mock(return_value=histories())
    pages = make().pull(None)
    first = next(pages)
    assert [o.ref for o in first.observations] == ["OPS-1"]
    assert first.cursor == {"updated": ms(T0), "seen": {"OPS-1": ms(T0)}}
    assert route.call_count == 1  # the second page is asked for only when the first is applied
    second = next(pages)
    assert [o.ref for o in second.observations] == ["OPS-2"]
    assert query(route.calls.last.request)["nextPageToken"] == "tok-2"
    assert query(route.calls.last.request)["jql"] == query(route.calls[0].request)["jql"]
    assert list(pages) == []


def test_repeated_page_token_is_refused(make: Any, router: respx.Router) -> None:
    router.get(SEARCH).mock(
        side_effect=[results(token="same"), results(token="same"), results(token="same")]
    )
    with pytest.raises(MalformedResponse, match="repeated a page token"):
        pull(make())


# -- the window and the no-change cycle ----------------------------------------------------


def test_no_change_cycle_is_one_request_and_yields_nothing(make: Any, router: respx.Router) -> None:
    search = router.get(SEARCH).mock(return_value=results(issue("OPS-7", T0, assignee=ALICE)))
    bulk = router.post(BULK).mock(return_value=histories())
    adapter = make()
    first = pull(adapter)
    assert len(observations(first)) == 1
    assert bulk.call_count == 1
    before = sum(adapter.request_counts().values())
    again = pull(adapter, first[-1].cursor)
    assert observations(again) == []
    assert sum(adapter.request_counts().values()) - before == 1
    assert (search.call_count, bulk.call_count) == (2, 1)
    assert again[-1].cursor == first[-1].cursor


def test_an_issue_changed_again_inside_the_overlap_is_yielded(
    make: Any, router: respx.Router
) -> None:
    router.get(SEARCH).mock(
        side_effect=[results(issue("OPS-7", T0)), results(issue("OPS-7", T1, assignee=BOB))]
    )
    router.post(BULK).mock(return_value=histories())
    adapter = make()
    cursor = pull(adapter)[-1].cursor
    (obs,) = observations(pull(adapter, cursor))
    assert obs.owners == (BOB,)


def test_a_stale_copy_from_a_lagging_index_is_dropped(make: Any, router: respx.Router) -> None:
    router.get(SEARCH).mock(return_value=results(issue("OPS-7", T0, assignee=BOB)))
    cursor = {"updated": ms(T1), "seen": {"OPS-7": ms(T1)}}
    assert observations(pull(make(), cursor)) == []


def test_bookmark_never_passes_now_minus_settle(make: Any, router: respx.Router) -> None:
    late = "2024-05-01T11:59:50.000+0000"  # after NOW - 30 s
    search = router.get(SEARCH).mock(return_value=results(issue("OPS-7", late)))
    router.post(BULK).mock(return_value=histories())
    adapter = make()
    cursor = pull(adapter)[-1].cursor
    signpost = ms("2024-05-01T11:59:30.000+0000")
    assert cursor == {"updated": signpost, "seen": {"OPS-7": ms(late)}}
    # Read again next time, from before the signpost, and dropped as already seen.
    assert observations(pull(adapter, cursor)) == []
    assert f"updated >= {signpost - 60_000} " in query(search.calls.last.request)["jql"]


def test_issue_moving_during_a_pull_rewinds_the_bookmark(make: Any, router: respx.Router) -> None:
    router.get(SEARCH).mock(
        side_effect=[
            results(issue("OPS-1", T0), token="p2"),
            results(issue("OPS-1", T1), token="p3"),  # edited mid-pull: it moved to the end
            results(issue("OPS-2", "2024-05-01T11:56:00.000+0000")),
        ]
    )
    router.post(BULK).mock(return_value=histories())
    pages = pull(make())
    assert [o.ref for o in observations(pages)] == ["OPS-1", "OPS-1", "OPS-2"]
    assert pages[-1].cursor is not None
    assert pages[-1].cursor["updated"] == ms(T0)


def test_unreadable_cursor_starts_over(make: Any, router: respx.Router) -> None:
    route = router.get(SEARCH).mock(return_value=results())
    for cursor in ({"updated": "yesterday"}, {"updated": -5}, {"updated": True}):
        pull(make(), cursor)
        assert "updated >= 0 " in query(route.calls.last.request)["jql"]


# -- owner change times --------------------------------------------------------------------


def test_owner_change_time_from_the_latest_assignee_change() -> None:
    created = datetime(2024, 4, 1, tzinfo=UTC)
    t1, t2 = datetime(2024, 4, 2, tzinfo=UTC), datetime(2024, 4, 3, tzinfo=UTC)
    assert owner_change_time((), frozenset({ALICE}), created) == created
    assert owner_change_time(((t2, BOB, None), (t1, ALICE, None)), frozenset({BOB}), created) == t2
    assert owner_change_time(((t1, ALICE, None), (t2, None, None)), frozenset(), created) == t2
    # The history lags the issue: the time is unknown rather than wrong.
    assert owner_change_time(((t1, ALICE, None),), frozenset({BOB}), created) is None


def test_bulk_changelog_gives_exact_owner_times(make: Any, router: respx.Router) -> None:
    router.get(SEARCH).mock(
        return_value=results(
            issue("OPS-7", T1, assignee=BOB, issue_id="10007"),
            issue("OPS-8", T1, assignee=ALICE, issue_id="10008"),
        )
    )
    bulk = router.post(BULK).mock(
        side_effect=[
            histories(("10007", [("2024-05-01T11:40:00.000+0000", ALICE)]), token="more"),
            histories(("10007", [("2024-05-01T13:45:00.000+0200", BOB)])),
        ]
    )
    found = {o.ref: o for o in observations(pull(make()))}
    # The latest change across both answers, whatever the zone it is written in.
    assert found["OPS-7"].owner_changed_at == datetime(2024, 5, 1, 11, 45, tzinfo=UTC)
    # Never reassigned: the owner has been the same since the issue was created.
    assert found["OPS-8"].owner_changed_at == datetime(2024, 4, 1, 7, 0, tzinfo=UTC)
    first, second = (json.loads(c.request.content) for c in bulk.calls)
    assert first == {
        "issueIdsOrKeys": ["OPS-7", "OPS-8"],
        "fieldIds": ["assignee", "status"],
        "maxResults": 1000,
    }
    assert second["nextPageToken"] == "more"


def test_unreadable_history_leaves_the_time_unknown(make: Any, router: respx.Router) -> None:
    router.get(SEARCH).mock(return_value=results(issue("OPS-7", T1, assignee=BOB)))
    router.post(BULK).mock(
        return_value=httpx.Response(
            200,
            json={
                "issueChangeLogs": [
                    {
                        "issueId": "10007",
                        "changeHistories": [
                            {
                                "created": "not a time",
                                "items": [{"fieldId": "assignee", "to": BOB}],
                            },
                            {"created": T0, "items": [{"fieldId": "assignee", "to": ALICE}]},
                            "junk",
                        ],
                    }
                ]
            },
        )
    )
    (obs,) = observations(pull(make()))
    assert obs.owner_changed_at is None
    assert obs.owner_time == obs.updated_at


def test_datacenter_owner_times_come_from_the_inline_changelog(
    make: Any, router: respx.Router
) -> None:
    dc = issue("OPS-1", T1)
    dc["fields"]["assignee"] = {"name": "bob", "key": "JIRAUSER10200"}
    dc["changelog"] = {
        "histories": [
            {"created": T0, "items": [{"field": "assignee", "to": "JIRAUSER10200"}]},
            {"created": T1, "items": [{"field": "status", "to": "3"}]},
        ]
    }
    body = {"startAt": 0, "maxResults": 50, "total": 1, "issues": [dc]}
    router.get("/rest/api/2/search").mock(return_value=httpx.Response(200, json=body))
    (obs,) = observations(pull(make(flavor="datacenter", email=None)))
    assert obs.owners == ("bob",)
    assert obs.owner_changed_at == datetime(2024, 5, 1, 11, 50, tzinfo=UTC)


# -- state ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status_name", "category", "states", "expected"),
    [
        ("To Do", "new", {}, "open"),
        ("In Review", "indeterminate", {}, "in_progress"),
        ("Done", "done", {}, "done"),
        ("Mystery", "undefined", {}, "open"),
        ("Blocked", "indeterminate", {"blocked": "blocked"}, "blocked"),
        ("Won't Do", "done", {"won't do": "cancelled"}, "cancelled"),
        ("In Review", "indeterminate", {"category:indeterminate": "blocked"}, "blocked"),
        (
            "Blocked",
            "indeterminate",
            {"category:indeterminate": "open", "Blocked": "blocked"},
            "blocked",
        ),
    ],
)
def test_state_mapping(
    make: Any,
    router: respx.Router,
    status_name: str,
    category: str,
    states: dict[str, str],
    expected: str,
) -> None:
    router.get(SEARCH).mock(
        return_value=results(issue("OPS-1", status_name=status_name, category=category))
    )
    router.post(BULK).mock(return_value=histories())
    assert observations(pull(make(states=states)))[0].state == expected


# -- cross-references from Atlassian Document Format ---------------------------------------


def test_adf_text_joins_runs_and_adds_link_targets() -> None:
    doc = {
        "type": "doc",
        "content": [
            {
                "type": "paragraph",
                "content": [
                    {"type": "text", "text": "acme/"},
                    {"type": "text", "text": "api#12", "marks": [{"type": "strong"}]},
                ],
            },
            {
                "type": "bulletList",
                "content": [
                    {
                        "type": "listItem",
                        "content": [
                            {
                                "type": "paragraph",
                                "content": [
                                    {
                                        "type": "inlineCard",
                                        "attrs": {"url": "https://x.atlassian.net/browse/WEB-3"},
                                    },
                                ],
                            },
                        ],
                    }
                ],
            },
            {"type": "paragraph", "content": [{"type": "text", "text": "OPS-4"}]},
        ],
    }
    text = adf_text(doc)
    assert "acme/api#12" in text
    assert "https://x.atlassian.net/browse/WEB-3" in text
    assert "\nOPS-4" in text


def test_adf_text_is_bounded_and_survives_deep_nesting() -> None:
    deep: dict[str, Any] = {"type": "text", "text": "OPS-9"}
    for _ in range(50_000):
        deep = {"type": "blockquote", "content": [deep]}
    text = adf_text(deep)  # no RecursionError: the walk keeps its own stack
    assert "OPS-9" not in text  # the node budget ended the walk first
    assert set(text) == {"\n"}
    assert len(text) <= 20_001
    wide = {"type": "doc", "content": [{"type": "text", "text": "x"}] * 100_000}
    assert len(adf_text(wide, max_nodes=1000)) < 1100
    assert adf_text({"type": "doc", "content": ["OPS-1", None, 5, [{"type": "text"}]]}) == "\n\n"


# -- hostile input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("a string", "not an object"),
        ({"id": "1", "fields": {}}, "key is missing"),
        ({"key": "OPS-1; DROP", "fields": {}}, "key is missing"),
        ({"key": "OPS-1", "id": "1", "fields": []}, "fields is missing"),
        ({"key": "OPS-1", "id": "1", "fields": {"updated": "soon"}}, "not a timestamp"),
        ({**issue("OPS-1"), "fields": {**issue("OPS-1")["fields"], "summary": 7}}, "summary"),
        ({**issue("OPS-1"), "id": "ten"}, "id is missing"),
        ({**issue("OPS-1"), "fields": {**issue("OPS-1")["fields"], "status": None}}, "status"),
        (
            {
                **issue("OPS-1"),
                "fields": {**issue("OPS-1")["fields"], "assignee": {"accountId": "x" * 200}},
            },
            "no valid accountId",
        ),
        (
            {**issue("OPS-1"), "fields": {**issue("OPS-1")["fields"], "description": 42}},
            "description is a JSON int",
        ),
    ],
)
def test_bad_issue_is_quarantined_and_the_page_goes_on(
    make: Any, router: respx.Router, raw: Any, reason: str
) -> None:
    router.get(SEARCH).mock(return_value=results(raw, issue("OPS-2", T1)))
    router.post(BULK).mock(return_value=histories())
    (page,) = pull(make())
    assert [o.ref for o in page.observations] == ["OPS-2"]
    (quarantined,) = page.quarantined
    assert reason in quarantined.reason
    assert quarantined.source == "ops"


def test_quarantined_boundary_issue_is_reported_once(make: Any, router: respx.Router) -> None:
    bad = {**issue("OPS-1", T0), "fields": {**issue("OPS-1", T0)["fields"], "status": 3}}
    router.get(SEARCH).mock(return_value=results(bad))
    adapter = make()
    first = pull(adapter)
    assert len(first[0].quarantined) == 1
    assert first[0].quarantined[0].ref == "OPS-1"
    assert pull(adapter, first[-1].cursor)[0].quarantined == []


def test_quarantine_payload_is_redacted_and_bounded(make: Any, router: respx.Router) -> None:
    bad = issue("OPS-1", summary="x" * 5000)
    bad["fields"]["status"] = f"leaked {TOKEN}"
    router.get(SEARCH).mock(return_value=results(bad))
    (page,) = pull(make())
    payload = page.quarantined[0].payload
    assert TOKEN not in payload
    assert len(payload) <= 1000


def test_huge_summary_is_bounded(make: Any, router: respx.Router) -> None:
    router.get(SEARCH).mock(return_value=results(issue("OPS-1", summary="y" * 100_000)))
    router.post(BULK).mock(return_value=histories())
    assert len(observations(pull(make()))[0].title) == 1024


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"issues": "none"}),
        httpx.Response(200, content=b'{"issues": [', headers={"content-type": "application/json"}),
    ],
)
def test_unreadable_search_answer_fails_the_poll(
    make: Any, router: respx.Router, response: httpx.Response
) -> None:
    router.get(SEARCH).mock(return_value=response)
    with pytest.raises(MalformedResponse):
        pull(make())


# -- errors and rate limits ----------------------------------------------------------------


def test_server_error_is_retried(make: Any, router: respx.Router, sleeps: list[float]) -> None:
    route = router.get(SEARCH).mock(side_effect=[httpx.Response(502), results()])
    pull(make())
    assert route.call_count == 2
    assert sleeps == [0.5]


@pytest.mark.parametrize("status_code", [400, 401, 403, 404])
def test_client_errors_are_fatal_and_not_retried(
    make: Any, router: respx.Router, status_code: int
) -> None:
    route = router.get(SEARCH).mock(
        return_value=httpx.Response(status_code, json={"errorMessages": ["nope"], "errors": {}})
    )
    with pytest.raises(FatalError, match=str(status_code)):
        pull(make())
    assert route.call_count == 1


@pytest.mark.parametrize("status_code", [429, 503])
def test_retry_after_is_honoured(
    make: Any, router: respx.Router, sleeps: list[float], status_code: int
) -> None:
    router.get(SEARCH).mock(
        side_effect=[httpx.Response(status_code, headers={"retry-after": "7"}), results()]
    )
    pull(make())
    assert sleeps == [7.0]


def test_rate_limit_reset_is_honoured_without_retry_after(
    make: Any, router: respx.Router, sleeps: list[float]
) -> None:
    reset = (datetime.now(UTC) + timedelta(seconds=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    router.get(SEARCH).mock(
        side_effect=[httpx.Response(429, headers={"x-ratelimit-reset": reset}), results()]
    )
    pull(make())
    assert len(sleeps) == 1
    assert 15 < sleeps[0] <= 20


def test_long_wait_ends_the_cycle(make: Any, router: respx.Router, sleeps: list[float]) -> None:
    router.get(SEARCH).mock(return_value=httpx.Response(429, headers={"retry-after": "600"}))
    with pytest.raises(RateLimited) as caught:
        pull(make())
    assert caught.value.retry_at > datetime.now(UTC) + timedelta(seconds=500)
    assert sleeps == []


def test_retries_give_up_as_retriable(make: Any, router: respx.Router) -> None:
    router.get(SEARCH).mock(return_value=httpx.Response(500))
    with pytest.raises(RetriableError):
        pull(make())


def test_rate_budget_from_the_last_answer(make: Any, router: respx.Router) -> None:
    adapter = make()
    assert adapter.rate_budget() is None
    router.get(SEARCH).mock(
        return_value=httpx.Response(
            200,
            json={"issues": [], "isLast": True},
            headers={
                "x-ratelimit-limit": "1000",
                "x-ratelimit-remaining": "120",
                "x-ratelimit-reset": "2024-05-01T13:00:00Z",
            },
        )
    )
    pull(adapter)
    budget = adapter.rate_budget()
    assert budget is not None
    assert (budget.remaining, budget.limit) == (120, 1000)
    assert budget.reset_at == datetime(2024, 5, 1, 13, 0, tzinfo=UTC)


# -- writing -------------------------------------------------------------------------------


def assignee_answer(account: str | None) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "10007",
            "key": "OPS-7",
            "fields": {"assignee": user(account) if account else None},
        },
    )


CHANGELOG = "/rest/api/3/issue/OPS-7/changelog"


def changelog_answer(old: str | None, new: str | None) -> httpx.Response:
    """The issue's changelog whose latest entry changed the assignee from `old` to `new`."""
    item = {"field": "assignee", "fieldId": "assignee", "from": old, "to": new}
    history = {"id": "10001", "created": "2026-03-01T10:00:00.000+0000", "items": [item]}
    return httpx.Response(
        200,
        json={"startAt": 0, "maxResults": 1, "total": 1, "isLast": True, "values": [history]},
    )


def test_write_puts_the_account_id_then_reads_back(make: Any, router: respx.Router) -> None:
    put = router.put("/rest/api/3/issue/OPS-7/assignee").mock(return_value=httpx.Response(204))
    router.get(CHANGELOG).mock(return_value=changelog_answer(ALICE, BOB))
    get = router.get("/rest/api/3/issue/OPS-7").mock(return_value=assignee_answer(BOB))
    owners = make().write_owner("OPS-7", BOB, (ALICE,), HANDOFF)
    assert owners == (BOB,)
    assert put.call_count == 1
    assert json.loads(put.calls.last.request.content) == {"accountId": BOB}
    assert query(get.calls.last.request) == {"fields": "assignee"}


def test_a_reassignment_the_write_replaced_is_put_back(make: Any, router: respx.Router) -> None:
    # syncd read ALICE; a person gave the issue to CAROL just before syncd's PUT of BOB: the
    # changelog shows the PUT replaced CAROL, so CAROL is put back and read back.
    put = router.put("/rest/api/3/issue/OPS-7/assignee").mock(return_value=httpx.Response(204))
    router.get(CHANGELOG).mock(return_value=changelog_answer(CAROL, BOB))
    router.get("/rest/api/3/issue/OPS-7").mock(return_value=assignee_answer(CAROL))
    owners = make().write_owner("OPS-7", BOB, (ALICE,), HANDOFF)
    assert owners == (CAROL,)
    assert [json.loads(c.request.content) for c in put.calls] == [
        {"accountId": BOB},
        {"accountId": CAROL},
    ]


def test_unassign_puts_null(make: Any, router: respx.Router) -> None:
    put = router.put("/rest/api/3/issue/OPS-7/assignee").mock(return_value=httpx.Response(204))
    router.get(CHANGELOG).mock(return_value=changelog_answer(ALICE, None))
    router.get("/rest/api/3/issue/OPS-7").mock(return_value=assignee_answer(None))
    assert make().write_owner("OPS-7", None, (ALICE,), HANDOFF) == ()
    assert json.loads(put.calls.last.request.content) == {"accountId": None}


def test_datacenter_writes_the_user_name(make: Any, router: respx.Router) -> None:
    put = router.put("/rest/api/2/issue/OPS-7/assignee").mock(return_value=httpx.Response(204))
    router.get("/rest/api/2/issue/OPS-7").mock(
        return_value=httpx.Response(
            200, json={"key": "OPS-7", "fields": {"assignee": {"name": "bob"}}}
        )
    )
    owners = make(flavor="datacenter", email=None).write_owner("OPS-7", "bob", (), HANDOFF)
    assert owners == ("bob",)
    assert json.loads(put.calls.last.request.content) == {"name": "bob"}


def test_refused_assignee_is_fatal(make: Any, router: respx.Router) -> None:
    router.put("/rest/api/3/issue/OPS-7/assignee").mock(
        return_value=httpx.Response(
            400, json={"errorMessages": [], "errors": {"assignee": "User cannot be assigned."}}
        )
    )
    with pytest.raises(FatalError, match="cannot be assigned"):
        make().write_owner("OPS-7", BOB, (), HANDOFF)


def test_read_owners(make: Any, router: respx.Router) -> None:
    router.get("/rest/api/3/issue/OPS-7").mock(return_value=assignee_answer(ALICE))
    assert make().read_owners("OPS-7") == (ALICE,)


@pytest.mark.parametrize(
    "body", [{"fields": {}}, {"fields": {"assignee": {"accountId": 5}}}, ["x"]]
)
def test_unreadable_owner_answer_is_malformed(make: Any, router: respx.Router, body: Any) -> None:
    router.get("/rest/api/3/issue/OPS-7").mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(MalformedResponse):
        make().read_owners("OPS-7")


@pytest.mark.parametrize("ref", ["acme/api#1", "OPS-7/../../admin", "ops-7"])
def test_refs_that_are_not_issue_keys_are_refused(make: Any, ref: str) -> None:
    with pytest.raises(FatalError, match="not a Jira issue key"):
        make().read_owners(ref)


# -- secrets and the contract --------------------------------------------------------------


def test_token_never_appears_in_errors_or_the_trace(
    make: Any, router: respx.Router, tmp_path: Path
) -> None:
    router.get(SEARCH).mock(return_value=httpx.Response(401, text=f"bad credentials for {TOKEN}"))
    trace_path = tmp_path / "trace.jsonl"
    adapter = make(trace=TraceWriter(trace_path))
    with pytest.raises(SourceError) as caught:
        pull(adapter)
    assert TOKEN not in str(caught.value)
    trace = trace_path.read_text()
    basic = base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
    assert TOKEN not in trace
    assert basic not in trace
    assert json.loads(trace)["request_headers"]["authorization"] == "REDACTED"


@pytest.mark.skipif(not CONTRACT.exists(), reason="../shared/contract is not present")
def test_requests_match_jiras_description(make: Any, router: respx.Router, tmp_path: Path) -> None:
    router.get(SEARCH).mock(return_value=results(issue("OPS-7", T0, assignee=ALICE)))
    router.post(BULK).mock(return_value=httpx.Response(200, json={"issueChangeLogs": []}))
    router.put("/rest/api/3/issue/OPS-7/assignee").mock(return_value=httpx.Response(204))
    router.get(CHANGELOG).mock(return_value=changelog_answer(ALICE, BOB))
    router.get("/rest/api/3/issue/OPS-7").mock(return_value=assignee_answer(BOB))
    trace_path = tmp_path / "trace.jsonl"
    adapter = make(trace=TraceWriter(trace_path))
    pull(adapter)
    adapter.write_owner("OPS-7", BOB, (ALICE,), HANDOFF)
    # The published description has known errors (tests/contract_errata.py).
    checker, _ = corrected_checker(CONTRACT.parents[1], tmp_path / "contract")
    result = subprocess.run(
        [sys.executable, str(checker), str(trace_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 conforming, 0 not conforming" in result.stdout


# -- identity: text and remote links -------------------------------------------------------


def remote_link(url: str, relationship: str | None = None, n: int = 1) -> dict[str, Any]:
    link: dict[str, Any] = {
        "id": 10000 + n,
        "self": f"{SITE}/rest/api/3/issue/OPS-7/remotelink/{10000 + n}",
        "object": {"url": url, "title": "linked", "icon": {}},
    }
    if relationship is not None:
        link["relationship"] = relationship
    return link


def test_text_declarations_and_relations(make: Any, router: respx.Router) -> None:
    description = adf_doc("Jira-side copy.", "GitHub issue: acme/api#12", "Blocked by OPS-3")
    router.get(SEARCH).mock(
        return_value=results(issue("OPS-7", summary="[acme/api#12] Login", description=description))
    )
    router.post(BULK).mock(return_value=histories())
    [obs] = observations(pull(make()))
    assert obs.declared == ("github:acme/api#12",)
    assert obs.mentions == ("jira:OPS-3",)
    assert obs.relation_kinds == (("jira:OPS-3", "blocked_by"),)


def test_remote_links_declare_issue_and_card_urls(make: Any, router: respx.Router) -> None:
    router.get(SEARCH).mock(return_value=results(issue("OPS-7", summary="Login")))
    router.post(BULK).mock(return_value=histories())
    router.routes["remotelinks"].mock(
        return_value=httpx.Response(
            200,
            json=[
                remote_link("https://github.com/Acme/API/issues/12", n=1),
                remote_link("https://trello.com/c/AbCd1234/3-login", "links to", n=2),
                remote_link("https://github.com/acme/api/issues/13", "is blocked by", n=3),
                remote_link("https://acme.atlassian.net/wiki/pages/1", "mentioned in", n=4),
                remote_link("https://github.com/acme/api/pull/14", n=5),
                remote_link("https://acme.atlassian.net/browse/OPS-7", n=6),  # itself
                {"id": 10007, "object": "not an object"},
            ],
        )
    )
    [obs] = observations(pull(make()))
    assert obs.declared == ("github:acme/api#12", "trello:AbCd1234")
    assert obs.mentions == ("github:acme/api#13",)
    assert obs.relation_kinds == (("github:acme/api#13", "blocked_by"),)
    assert router.routes["remotelinks"].calls.last.request.url.path == (
        "/rest/api/3/issue/OPS-7/remotelink"
    )


def test_remote_links_are_read_only_for_changed_issues(make: Any, router: respx.Router) -> None:
    router.get(SEARCH).mock(return_value=results(issue("OPS-7", T0), issue("OPS-8", T0)))
    router.post(BULK).mock(return_value=histories())
    adapter = make()
    pages = pull(adapter)
    assert router.routes["remotelinks"].call_count == 2
    # The same two issues, unchanged, come back in the overlap: no link is read again.
    pull(adapter, pages[-1].cursor)
    assert router.routes["remotelinks"].call_count == 2


def test_linking_switched_off_is_asked_once(make: Any, router: respx.Router) -> None:
    router.get(SEARCH).mock(return_value=results(issue("OPS-7"), issue("OPS-8")))
    router.post(BULK).mock(return_value=histories())
    router.routes["remotelinks"].mock(
        return_value=httpx.Response(403, json={"errorMessages": ["Issue linking is disabled."]})
    )
    found = observations(pull(make()))
    assert [o.ref for o in found] == ["OPS-7", "OPS-8"]
    assert router.routes["remotelinks"].call_count == 1


def test_remote_links_can_be_switched_off(make: Any, router: respx.Router) -> None:
    router.get(SEARCH).mock(return_value=results(issue("OPS-7")))
    router.post(BULK).mock(return_value=histories())
    assert [o.ref for o in observations(pull(make(remote_links=False)))] == ["OPS-7"]
    assert router.routes["remotelinks"].call_count == 0


def test_unreadable_remote_links_quarantine_the_issue(make: Any, router: respx.Router) -> None:
    router.get(SEARCH).mock(return_value=results(issue("OPS-7"), issue("OPS-8")))
    router.post(BULK).mock(return_value=histories())
    router.routes["remotelinks"].mock(
        side_effect=[
            httpx.Response(200, json={"not": "a list"}),
            httpx.Response(200, json=[]),
        ]
    )
    [page] = pull(make())
    assert [o.ref for o in page.observations] == ["OPS-8"]
    assert [(q.ref, q.reason) for q in page.quarantined] == [
        ("OPS-7", "its remote links answer is a JSON dict, not a list")
    ]


def test_code_blocks_in_a_description_declare_nothing(make: Any, router: respx.Router) -> None:
    description = {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "codeBlock", "content": [{"type": "text", "text": "Jira: OPS-9"}]},
        ],
    }
    router.get(SEARCH).mock(return_value=results(issue("OPS-7", description=description)))
    router.post(BULK).mock(return_value=histories())
    [obs] = observations(pull(make()))
    assert obs.declared == ()
    assert obs.mentions == ("jira:OPS-9",)


def test_known_projects_are_the_projects_read(make: Any, router: respx.Router) -> None:
    router.get(SEARCH).mock(return_value=results(issue("OPS-7"), issue("STREAMPIPES-651")))
    router.post(BULK).mock(return_value=histories())
    adapter = make()
    assert adapter.known_projects() == frozenset()
    pull(adapter)
    assert adapter.known_projects() == {"OPS", "STREAMPIPES"}


def issue_link(key: str, outward: bool, name: str, inward: str, out: str) -> dict[str, Any]:
    other = {"id": "10999", "key": key, "self": f"{SITE}/rest/api/3/issue/10999"}
    return {
        "id": "10500",
        "self": f"{SITE}/rest/api/3/issueLink/10500",
        "type": {"id": "1", "name": name, "inward": inward, "outward": out},
        ("outwardIssue" if outward else "inwardIssue"): other,
    }


def test_jiras_own_issue_links_are_relations_with_their_kind(
    make: Any, router: respx.Router
) -> None:
    links = [
        issue_link("OPS-1", True, "Blocks", "is blocked by", "blocks"),
        issue_link("OPS-2", False, "Blocks", "is blocked by", "blocks"),
        issue_link("OPS-3", True, "Duplicate", "is duplicated by", "duplicates"),
        issue_link("OPS-4", True, "Cloners", "is cloned by", "clones"),
        issue_link("not a key", True, "Relates", "relates to", "relates to"),
    ]
    raw = issue(
        "OPS-7",
        description=adf_doc("See also OPS-2"),
        issuelinks=links,
        parent={"id": "10005", "key": "OPS-5"},
        subtasks=[{"id": "10008", "key": "OPS-8"}],
    )
    router.get(SEARCH).mock(return_value=results(raw))
    router.post(BULK).mock(return_value=histories())
    [obs] = observations(pull(make()))
    assert obs.declared == ()
    assert obs.mentions == (
        "jira:OPS-2",
        "jira:OPS-1",
        "jira:OPS-3",
        "jira:OPS-4",
        "jira:OPS-5",
        "jira:OPS-8",
    )
    assert dict(obs.relation_kinds) == {
        "jira:OPS-1": "blocks",
        "jira:OPS-2": "blocked_by",  # Jira's link type says more than "see also"
        "jira:OPS-3": "duplicate_of",
        "jira:OPS-4": "related",
        "jira:OPS-5": "parent",
        "jira:OPS-8": "child",
    }
