"""The GitHub adapter against a respx router standing in for api.github.com.

Issues served here carry every field GitHub's description marks required, so the traffic of
these tests is also checked against the official description when ../shared is present.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import ValidationError

from syncd.adapters import adapter_class
from syncd.adapters.github import GitHubAdapter, GitHubConfig
from syncd.config import Person
from syncd.crossref import Rules
from syncd.errors import FatalError, MalformedResponse, RateLimited, RetriableError, SourceError
from syncd.http import HttpOptions, TraceWriter
from syncd.models import Handoff, Observation, Page, Quarantined
from syncd.people import Directory

BASE = "https://api.github.com"
ISSUES = "/repos/acme/api/issues"
TOKEN = "ghp_unitTestToken0123456789abcdefXYZ"
T0 = "2024-05-01T12:00:00Z"
T1 = "2024-05-01T12:05:00Z"
T2 = "2024-05-01T12:10:00Z"
HANDOFF = Handoff("REQ-1", "Printer", "bob", "Bob", "alice", "Alice", "operator")
CONTRACT = Path(__file__).resolve().parents[2] / "shared" / "contract" / "check_traffic.py"


def user(login: str) -> dict[str, Any]:
    api = f"https://api.github.com/users/{login}"
    return {
        "login": login,
        "id": abs(hash(login)) % 10**6,
        "node_id": "MDQ6VXNlcjE=",
        "avatar_url": f"https://avatars.githubusercontent.com/{login}",
        "gravatar_id": "",
        "url": api,
        "html_url": f"https://github.com/{login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": "User",
        "site_admin": False,
    }


def issue(
    number: int,
    updated_at: str = T0,
    *,
    assignees: tuple[str, ...] = (),
    state: str = "open",
    state_reason: str | None = None,
    labels: tuple[str, ...] = (),
    title: str | None = None,
    body: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    api = f"https://api.github.com/repos/acme/api/issues/{number}"
    return {
        "id": 1000 + number,
        "node_id": "MDU6SXNzdWUx",
        "url": api,
        "repository_url": "https://api.github.com/repos/acme/api",
        "labels_url": f"{api}/labels{{/name}}",
        "comments_url": f"{api}/comments",
        "events_url": f"{api}/events",
        "html_url": f"https://github.com/acme/api/issues/{number}",
        "number": number,
        "state": state,
        "state_reason": state_reason,
        "title": title if title is not None else f"Issue {number}",
        "body": body,
        "user": user("reporter"),
        "labels": [
            {"id": i, "node_id": "x", "url": f"{api}/l", "name": name, "color": "fff"}
            for i, name in enumerate(labels)
        ],
        "assignee": user(assignees[0]) if assignees else None,
        "assignees": [user(login) for login in assignees],
        "milestone": None,
        "locked": False,
        "comments": 0,
        "closed_at": None if state == "open" else updated_at,
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": updated_at,
        "author_association": "MEMBER",
        **extra,
    }


def assigned_event(
    ident: int, assignee: str, actor: str, at: str, event: str = "assigned"
) -> dict[str, Any]:
    return {
        "id": ident,
        "node_id": "MDE1OkFzc2lnbmVkRXZlbnQx",
        "url": f"https://api.github.com/repos/acme/api/issues/events/{ident}",
        "actor": user(actor),
        "event": event,
        "commit_id": None,
        "commit_url": None,
        "created_at": at,
        "assignee": user(assignee),
        "assigner": user(actor),
        "performed_via_github_app": None,
    }


def listing(*items: Any, link: str | None = None, etag: str | None = None) -> httpx.Response:
    headers = {"x-ratelimit-remaining": "4999", "x-ratelimit-limit": "5000"}
    if link:
        headers["link"] = link
    if etag:
        headers["etag"] = etag
    return httpx.Response(200, json=list(items), headers=headers)


def next_link(url: str) -> str:
    return f'<{url}>; rel="next", <{url}&last=1>; rel="last"'


@pytest.fixture
def router() -> respx.Router:
    return respx.Router(base_url=BASE, assert_all_called=False)


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_config(monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> GitHubConfig:
    monkeypatch.setenv("SYNCD_TEST_GITHUB_TOKEN", TOKEN)
    doc: dict[str, Any] = {
        "name": "api",
        "type": "github",
        "repo": "Acme/API",
        "token": {"env": "SYNCD_TEST_GITHUB_TOKEN"},
        "write_spacing": 0,
        **overrides,
    }
    config = GitHubConfig.model_validate(doc)
    config.resolve_secrets()
    return config


@pytest.fixture
def make(
    monkeypatch: pytest.MonkeyPatch, router: respx.Router, sleeps: list[float]
) -> Iterator[Any]:
    made: list[GitHubAdapter] = []

    def build(trace: TraceWriter | None = None, **overrides: Any) -> GitHubAdapter:
        options = HttpOptions(
            sleep=sleeps.append, transport=httpx.MockTransport(router.handler), trace=trace
        )
        adapter = GitHubAdapter(make_config(monkeypatch, **overrides), options)
        made.append(adapter)
        return adapter

    yield build
    for adapter in made:
        adapter.close()


def pull(adapter: GitHubAdapter, cursor: dict[str, Any] | None = None) -> list[Page]:
    return list(adapter.pull(cursor))


def observations(pages: list[Page]) -> list[Observation]:
    return [o for p in pages for o in p.observations]


# -- registry and config -------------------------------------------------------------------


def test_registered_under_github() -> None:
    assert adapter_class("github") is GitHubAdapter
    assert GitHubAdapter.Config is GitHubConfig


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"repo": "acme"}, "owner/name"),
        ({"repo": "acme/api/extra"}, "owner/name"),
        ({"repo": "-acme/api"}, "owner/name"),
        ({"per_page": 0}, "per_page"),
        ({"per_page": 101}, "per_page"),
        ({"write_spacing": -1}, "write_spacing"),
        ({"base_url": "ftp://ghe.example.com"}, "http(s) URL"),
        ({"base_url": "http://ghe.example.com/api/v3"}, "use https"),
        ({"base_url": "http://10.0.0.5/api/v3"}, "use https"),
        ({"base_url": "https://user:pw@ghe.example.com/api/v3"}, "credentials"),
        ({"states": {"in progress": "in_progress"}}, "'label:<label name>'"),
        ({"type": "jira"}, "type"),
        ({"token": "inline-secret"}, "not read inline"),
    ],
)
def test_config_rejects(
    monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValidationError) as info:
        make_config(monkeypatch, **overrides)
    assert problem in str(info.value)


def test_config_accepts_enterprise_and_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    ghe = make_config(monkeypatch, base_url="https://ghe.example.com/api/v3/")
    assert ghe.base_url == "https://ghe.example.com/api/v3"
    for loopback in ("http://127.0.0.1:8123/api/v3", "http://[::1]:8123", "http://localhost"):
        assert make_config(monkeypatch, base_url=loopback).base_url == loopback
    assert make_config(monkeypatch).write_spacing == 0
    assert GitHubConfig.model_fields["write_spacing"].default == 1.0


# -- reading: request shape, mapping, pagination ------------------------------------------


def test_first_listing_request_shape(make: Any, router: respx.Router) -> None:
    route = router.get(ISSUES).mock(return_value=listing())
    assert pull(make()) == [Page(cursor={})]
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == "2022-11-28"
    assert "if-none-match" not in request.headers
    assert dict(request.url.params) == {
        "state": "all",
        "sort": "updated",
        "direction": "asc",
        "per_page": "100",
    }


def test_listing_sends_since_and_per_page_from_config(make: Any, router: respx.Router) -> None:
    route = router.get(ISSUES).mock(return_value=listing())
    pull(make(per_page=25), {"since": T1, "seen": {}})
    params = route.calls.last.request.url.params
    assert params["since"] == T1
    assert params["per_page"] == "25"


def test_enterprise_base_url(make: Any, router: respx.Router) -> None:
    route = router.get("https://ghe.example.com/api/v3/repos/acme/api/issues").mock(
        return_value=listing(issue(1))
    )
    pages = pull(make(base_url="https://ghe.example.com/api/v3"))
    assert route.call_count == 1
    assert [o.ref for o in observations(pages)] == ["acme/api#1"]


def test_issue_maps_to_observation(make: Any, router: respx.Router) -> None:
    item = issue(
        12,
        T1,
        assignees=("Alice", "bob"),
        title="Printer on fire, see OPS-7 and acme/api#12",
        body="Also https://github.com/acme/web/issues/3 and [REQ-42]",
    )
    router.get(ISSUES).mock(return_value=listing(item))
    [obs] = observations(pull(make()))
    assert obs == Observation(
        source="api",
        ref="acme/api#12",
        url="https://github.com/acme/api/issues/12",
        title="Printer on fire, see OPS-7 and acme/api#12",
        state="open",
        owners=("Alice", "bob"),
        updated_at=datetime(2024, 5, 1, 12, 5, tzinfo=UTC),
        requester="reporter",
        keys=("github:acme/api#12",),
        mentions=("jira:OPS-7", "github:acme/web#3", "req:42"),
        relation_kinds=(("jira:OPS-7", "related"),),
    )
    assert obs.updated_at.utcoffset() == timedelta(0)


# -- identity: declarations count only from trusted authors -----------------------------------

DECLARING = {"title": "[OPS-7] Login fails", "body": "Jira: OPS-8\nblocked by acme/api#3"}


@pytest.mark.parametrize("association", ["OWNER", "MEMBER", "COLLABORATOR"])
def test_members_declare(make: Any, router: respx.Router, association: str) -> None:
    item = issue(12, author_association=association, **DECLARING)
    router.get(ISSUES).mock(return_value=listing(item))
    [obs] = observations(pull(make()))
    assert obs.author_trusted
    assert obs.declared == ("jira:OPS-7", "jira:OPS-8")
    assert obs.mentions == ("github:acme/api#3",)
    assert obs.relation_kinds == (("github:acme/api#3", "blocked_by"),)


@pytest.mark.parametrize("association", ["NONE", "CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", None])
def test_an_outsiders_declarations_are_only_mentions(
    make: Any, router: respx.Router, association: str | None
) -> None:
    # Anyone can open an issue on a public repository and title it "[OPS-7] ...".
    item = issue(12, author_association=association, **DECLARING)
    router.get(ISSUES).mock(return_value=listing(item))
    [obs] = observations(pull(make()))
    assert not obs.author_trusted
    assert obs.declared == ()
    assert obs.mentions == ("jira:OPS-7", "jira:OPS-8", "github:acme/api#3")


def test_trusted_authors_widens_trust(make: Any, router: respx.Router) -> None:
    item = issue(12, author_association="CONTRIBUTOR", **DECLARING)
    router.get(ISSUES).mock(return_value=listing(item))
    [obs] = observations(pull(make(trusted_authors=["member", "CONTRIBUTOR"])))
    assert obs.author_trusted
    assert obs.declared == ("jira:OPS-7", "jira:OPS-8")


def test_a_configured_person_is_trusted(make: Any, router: respx.Router) -> None:
    item = issue(12, author_association="NONE", user=user("Reporter"), **DECLARING)
    router.get(ISSUES).mock(return_value=listing(item))
    adapter = make()
    adapter.bind_people(Directory.build([Person(id="rita", handles={"github": "reporter"})]))
    [obs] = observations(pull(adapter))
    assert obs.author_trusted
    assert obs.declared == ("jira:OPS-7", "jira:OPS-8")


def test_trusted_authors_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="unknown author_association 'maintainer'"):
        make_config(monkeypatch, trusted_authors=["maintainer"])
    with pytest.raises(ValidationError, match="unknown author_association '@'"):
        make_config(monkeypatch, trusted_authors=["@"])


def test_an_account_named_in_trusted_authors_declares(make: Any, router: respx.Router) -> None:
    bot = issue(12, author_association="NONE", user=user("Sync-Bot[bot]"), **DECLARING)
    other = issue(13, author_association="NONE", user=user("someone"), **DECLARING)
    router.get(ISSUES).mock(return_value=listing(bot, other))
    adapter = make(trusted_authors=["OWNER", "@sync-bot[bot]"])
    adapter.bind_people(Directory.build([]))  # binding people keeps the named accounts
    found = {o.ref: o for o in observations(pull(adapter))}
    assert found["acme/api#12"].declared == ("jira:OPS-7", "jira:OPS-8")
    assert found["acme/api#13"].declared == ()


def test_declaring_rules_come_from_the_binding(make: Any, router: respx.Router) -> None:
    item = issue(12, title="OPS-7: Login fails", body="Ticket: OPS-8\nsee UTF-8 and ZZZ-1")
    router.get(ISSUES).mock(return_value=listing(item))
    adapter = make()
    assert observations(pull(adapter))[0].declared == ()
    adapter.bind_matching(Rules.build(["Ticket"], ["OPS"]))
    [obs] = observations(pull(adapter))
    assert obs.declared == ("jira:OPS-7", "jira:OPS-8")
    assert obs.mentions == ()  # ZZZ is no project a Jira source holds


def test_pull_requests_are_skipped(make: Any, router: respx.Router) -> None:
    pr = issue(5, pull_request={"url": "https://api.github.com/repos/acme/api/pulls/5"})
    router.get(ISSUES).mock(return_value=listing(issue(4), pr, issue(6)))
    pages = pull(make())
    assert [o.ref for o in observations(pages)] == ["acme/api#4", "acme/api#6"]
    assert pages[0].quarantined == []


def test_follows_link_next_as_given(make: Any, router: respx.Router) -> None:
    # GitHub's next links name the repository by id; the adapter must not rebuild them.
    page2 = f"{BASE}/repositories/77/issues?state=all&sort=updated&direction=asc&per_page=2&page=2"
    page3 = f"{BASE}/repositories/77/issues?state=all&sort=updated&direction=asc&per_page=2&page=3"
    first = router.get(ISSUES).mock(
        return_value=listing(issue(1, T0), issue(2, T0), link=next_link(page2), etag='"p1"')
    )
    second = router.get(page2).mock(
        return_value=listing(issue(3, T1), issue(4, T1), link=next_link(page3))
    )
    third = router.get(page3).mock(return_value=listing(issue(5, T2)))
    pages = pull(make(per_page=2))
    assert (first.call_count, second.call_count, third.call_count) == (1, 1, 1)
    assert str(second.calls.last.request.url) == page2
    assert str(third.calls.last.request.url) == page3
    assert [[o.ref for o in p.observations] for p in pages] == [
        ["acme/api#1", "acme/api#2"],
        ["acme/api#3", "acme/api#4"],
        ["acme/api#5"],
    ]
    # each page carries the cursor to store once it is applied; no etag for a paged listing
    assert [p.cursor["since"] for p in pages if p.cursor] == [T0, T1, T2]
    assert [sorted(p.cursor["seen"]) for p in pages if p.cursor] == [["1", "2"], ["3", "4"], ["5"]]
    assert all("etag" not in (p.cursor or {}) for p in pages)


def test_pages_are_streamed_one_at_a_time(make: Any, router: respx.Router) -> None:
    page2 = f"{BASE}/repositories/77/issues?page=2"
    router.get(ISSUES).mock(return_value=listing(issue(1), link=next_link(page2)))
    second = router.get(page2).mock(return_value=listing(issue(2, T1)))
    stream = make().pull(None)
    first_page = next(stream)
    assert [o.ref for o in first_page.observations] == ["acme/api#1"]
    assert second.call_count == 0  # the next page is fetched only when asked for
    assert [o.ref for o in next(stream).observations] == ["acme/api#2"]


def test_link_to_another_host_is_not_followed(make: Any, router: respx.Router) -> None:
    router.get(ISSUES).mock(
        return_value=listing(issue(1), link=next_link("https://evil.example/steal?page=2"))
    )
    elsewhere = router.get("https://evil.example/steal").mock(return_value=listing())
    stream = make().pull(None)
    with pytest.raises(MalformedResponse, match="points away"):
        list(stream)
    assert elsewhere.call_count == 0


def test_link_loop_is_refused(make: Any, router: respx.Router) -> None:
    page2 = f"{BASE}/repositories/77/issues?page=2"
    router.get(ISSUES).mock(return_value=listing(issue(1), link=next_link(page2)))
    looping = router.get(page2).mock(return_value=listing(issue(2, T1), link=next_link(page2)))
    with pytest.raises(MalformedResponse, match="already read"):
        pull(make())
    assert looping.call_count == 1


# -- conditional requests and the boundary ---------------------------------------------------


def test_not_modified_costs_exactly_one_request(make: Any, router: respx.Router) -> None:
    route = router.get(ISSUES).mock(return_value=httpx.Response(304))
    adapter = make()
    pages = pull(adapter, {"since": T0, "seen": {"1": "abc"}, "etag": 'W/"e1"'})
    assert pages == []
    assert route.call_count == 1
    assert route.calls.last.request.headers["if-none-match"] == 'W/"e1"'
    assert adapter.client.requests_made == 1
    assert adapter.request_counts() == {"GET 304": 1}


def test_no_change_cycles_settle_on_one_conditional_request(
    make: Any, router: respx.Router
) -> None:
    adapter = make()
    route = router.get(ISSUES)
    # cycle 1: a new issue moves the bookmark, so this response's etag (for a URL without
    # `since`) would never match the next request and is not kept
    route.mock(return_value=listing(issue(1, T0, assignees=("alice",)), etag='"a"'))
    [page] = pull(adapter)
    assert len(page.observations) == 1
    assert page.cursor is not None
    assert "etag" not in page.cursor
    # cycle 2: the boundary issue comes back (since is inclusive) and is dropped; the
    # bookmark stays put, so the etag now names exactly the next request
    route.mock(return_value=listing(issue(1, T0, assignees=("alice",)), etag='"b"'))
    [page] = pull(adapter, page.cursor)
    assert page.observations == []
    assert route.calls.last.request.url.params["since"] == T0
    assert page.cursor is not None
    assert page.cursor["etag"] == '"b"'
    # cycle 3: the same request, conditional, answered 304: one request, nothing yielded
    route.mock(return_value=httpx.Response(304))
    before = adapter.client.requests_made
    assert pull(adapter, page.cursor) == []
    assert adapter.client.requests_made - before == 1
    assert route.calls.last.request.headers["if-none-match"] == '"b"'
    assert route.calls.last.request.url.params["since"] == T0


@pytest.mark.parametrize(
    ("items", "link", "per_page"),
    [
        # a full page: a second page could appear while the first stays byte-identical
        ((issue(1, T0), issue(2, T0)), None, 2),
        # more pages follow: the etag covers the first page only
        ((issue(1, T0),), next_link(f"{BASE}/repositories/77/issues?page=2"), 2),
    ],
)
def test_etag_not_kept_unless_the_page_was_the_whole_listing(
    make: Any, router: respx.Router, items: tuple[Any, ...], link: str | None, per_page: int
) -> None:
    router.get(ISSUES).mock(return_value=listing(*items, link=link, etag='"x"'))
    router.get(f"{BASE}/repositories/77/issues").mock(return_value=listing())
    pages = pull(make(per_page=per_page), {"since": T0, "seen": {}})
    assert pages[0].cursor is not None
    assert "etag" not in pages[0].cursor


def test_boundary_issue_is_dropped_only_while_unchanged(make: Any, router: respx.Router) -> None:
    adapter = make()
    route = router.get(ISSUES)
    route.mock(return_value=listing(issue(1, T0), issue(2, T0, assignees=("alice",))))
    [page] = pull(adapter)
    assert len(page.observations) == 2
    # next cycle: both come back at the boundary; #2 changed owner within the same second
    # (GitHub's timestamps have one-second precision), #3 is new at the same time
    route.mock(
        return_value=listing(
            issue(1, T0), issue(2, T0, assignees=("bob",)), issue(3, T0), issue(4, T1)
        )
    )
    # #2's assignees changed since the last pull: its events say who and when; no other
    # issue's events are read.
    events = router.get(f"{ISSUES}/2/events").mock(return_value=httpx.Response(200, json=[]))
    [page] = pull(adapter, page.cursor)
    assert events.call_count == 1
    assert [(o.ref, o.owners) for o in page.observations] == [
        ("acme/api#2", ("bob",)),
        ("acme/api#3", ()),
        ("acme/api#4", ()),
    ]
    assert page.cursor is not None
    assert page.cursor["since"] == T1
    assert list(page.cursor["seen"]) == ["4"]


def _dated(response: httpx.Response, server_now: str) -> httpx.Response:
    when = datetime.fromisoformat(server_now)
    response.headers["date"] = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
    return response


@pytest.mark.parametrize(
    ("server_now", "since", "seen"),
    [
        # the boundary second is well behind GitHub's clock: step one second past it
        ("2024-05-01T12:05:00+00:00", "2024-05-01T12:00:01Z", []),
        # still recent: a change may yet land in it, so keep it and remember what was read
        ("2024-05-01T12:00:30+00:00", T0, ["1", "2"]),
    ],
)
def test_settled_boundary_is_left_behind(
    make: Any, router: respx.Router, server_now: str, since: str, seen: list[str]
) -> None:
    router.get(ISSUES).mock(return_value=_dated(listing(issue(1), issue(2)), server_now))
    [page] = pull(make())
    assert page.cursor is not None
    assert page.cursor["since"] == since
    assert sorted(page.cursor["seen"]) == seen


def test_bulk_edit_in_one_second_settles_to_one_request_per_cycle(
    make: Any, router: respx.Router
) -> None:
    # 5 issues changed in the same second, 2 per page: without stepping past that second
    # every cycle would read all 3 pages again
    late = "2024-05-01T12:10:00+00:00"
    page2 = f"{BASE}/repositories/77/issues?page=2"
    page3 = f"{BASE}/repositories/77/issues?page=3"
    first = router.get(ISSUES)
    first.mock(return_value=listing(issue(1), issue(2), link=next_link(page2)))
    router.get(page2).mock(return_value=listing(issue(3), issue(4), link=next_link(page3)))
    router.get(page3).mock(return_value=_dated(listing(issue(5)), late))
    adapter = make(per_page=2)
    pages = pull(adapter)
    assert len(observations(pages)) == 5
    cursor = pages[-1].cursor
    assert cursor is not None
    assert cursor["since"] == "2024-05-01T12:00:01Z"
    first.mock(return_value=_dated(listing(etag='"empty"'), late))
    [page] = pull(adapter, cursor)
    assert page.cursor is not None
    assert page.cursor["etag"] == '"empty"'
    first.mock(return_value=httpx.Response(304))
    before = adapter.client.requests_made
    assert pull(adapter, page.cursor) == []
    assert adapter.client.requests_made - before == 1


def test_items_older_than_the_bookmark_are_not_replayed(make: Any, router: respx.Router) -> None:
    # A server that ignores `since` must not roll issues back to what they were.
    router.get(ISSUES).mock(return_value=listing(issue(1, T0), issue(2, T2)))
    [page] = pull(make(), {"since": T1, "seen": {}})
    assert [o.ref for o in page.observations] == ["acme/api#2"]


def test_unreadable_cursor_starts_over(make: Any, router: respx.Router) -> None:
    route = router.get(ISSUES).mock(return_value=listing(issue(1)))
    [page] = pull(make(), {"since": "yesterday", "etag": 5})
    assert "since" not in route.calls.last.request.url.params
    assert "if-none-match" not in route.calls.last.request.headers
    assert len(page.observations) == 1


def test_issue_moving_during_a_pull_rewinds_the_bookmark(make: Any, router: respx.Router) -> None:
    # #1 is updated between the two page requests: it moves to the end of the listing, and
    # since GitHub pages by offset, whatever crossed the page boundary was never seen. The
    # next pull must start again from #1's old time.
    page2 = f"{BASE}/repositories/77/issues?page=2"
    router.get(ISSUES).mock(return_value=listing(issue(1, T0), issue(2, T1), link=next_link(page2)))
    router.get(page2).mock(return_value=listing(issue(4, T1), issue(1, T2)))
    pages = pull(make(per_page=2))
    assert [p.cursor for p in pages][-1] == {"since": T0}
    assert [o.ref for o in observations(pages)] == [
        "acme/api#1",
        "acme/api#2",
        "acme/api#4",
        "acme/api#1",
    ]


# -- hostile input ---------------------------------------------------------------------


def _without(key: str) -> dict[str, Any]:
    item = issue(7)
    del item[key]
    return item


@pytest.mark.parametrize(
    ("bad", "ref", "reason"),
    [
        ("not an object", None, "not an object"),
        (_without("number"), None, "number"),
        (issue(7) | {"number": "7"}, None, "number"),
        (issue(7) | {"number": True}, None, "number"),
        (issue(7) | {"number": -3}, None, "number"),
        (_without("updated_at"), "acme/api#7", "updated_at"),
        (issue(7, "last tuesday"), "acme/api#7", "updated_at"),
        (issue(7, "2024-05-01T12:00:00"), "acme/api#7", "time zone"),
        (issue(7) | {"title": 12}, "acme/api#7", "title"),
        (_without("title"), "acme/api#7", "title"),
        (issue(7) | {"body": ["x"]}, "acme/api#7", "body"),
        (_without("html_url"), "acme/api#7", "html_url"),
        (issue(7) | {"html_url": "javascript:alert(1)"}, "acme/api#7", "html_url"),
        # no assignees list is "owners unknown", never "unassigned"
        (_without("assignees"), "acme/api#7", "owners are unknown"),
        (issue(7) | {"assignees": "alice"}, "acme/api#7", "owners are unknown"),
        (issue(7) | {"assignees": [{"id": 1}]}, "acme/api#7", "login"),
        (issue(7) | {"assignees": [{"login": "bad login\n"}]}, "acme/api#7", "login"),
        (issue(7) | {"assignees": [user("a")] * 101}, "acme/api#7", "at most 10"),
        (issue(7) | {"state": "merged"}, "acme/api#7", "state"),
        (issue(7) | {"state_reason": 3}, "acme/api#7", "state_reason"),
        (issue(7) | {"labels": "bug"}, "acme/api#7", "labels"),
        (issue(7) | {"labels": [{"id": 3}]}, "acme/api#7", "labels"),
    ],
)
def test_bad_item_is_quarantined_and_the_page_goes_on(
    make: Any, router: respx.Router, bad: Any, ref: str | None, reason: str
) -> None:
    router.get(ISSUES).mock(return_value=listing(issue(1, T0), bad, issue(9, T1)))
    [page] = pull(make())
    assert [o.ref for o in page.observations] == ["acme/api#1", "acme/api#9"]
    [q] = page.quarantined
    assert isinstance(q, Quarantined)
    assert (q.source, q.ref) == ("api", ref)
    assert reason in q.reason
    assert q.payload
    assert len(q.payload) <= 1000


def test_quarantine_payload_is_redacted_and_bounded(make: Any, router: respx.Router) -> None:
    bad = issue(7, body=f"token {TOKEN} " + "x" * 1_000_000) | {"assignees": "x"}
    router.get(ISSUES).mock(return_value=listing(bad))
    [page] = pull(make())
    [q] = page.quarantined
    assert TOKEN not in q.payload
    assert "REDACTED" in q.payload
    assert len(q.payload) <= 1000


def test_quarantined_boundary_item_is_reported_once(make: Any, router: respx.Router) -> None:
    adapter = make()
    router.get(ISSUES).mock(return_value=listing(issue(7, T0) | {"assignees": 5}))
    [page] = pull(adapter)
    assert len(page.quarantined) == 1
    [page] = pull(adapter, page.cursor)
    assert page.quarantined == []


def test_requester_is_optional(make: Any, router: respx.Router) -> None:
    router.get(ISSUES).mock(
        return_value=listing(issue(1) | {"user": None}, issue(2) | {"user": {"login": 5}})
    )
    assert [o.requester for o in observations(pull(make()))] == [None, None]


def test_huge_body_is_bounded(make: Any, router: respx.Router) -> None:
    body = " ".join(f"OPS-{n}" for n in range(1, 200_000))
    router.get(ISSUES).mock(return_value=listing(issue(1, title="t" * 50_000, body=body)))
    [obs] = observations(pull(make()))
    assert len(obs.title) <= 1024
    assert len(obs.mentions) <= 50
    assert obs.mentions[0] == "jira:OPS-1"


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"<html>unicorn</html>"),
        httpx.Response(200, content=b'[{"number": 1'),
        httpx.Response(200, json={"message": "not a list"}),
    ],
)
def test_unreadable_page_fails_the_poll(
    make: Any, router: respx.Router, response: httpx.Response
) -> None:
    router.get(ISSUES).mock(return_value=response)
    stream = make().pull(None)
    with pytest.raises(MalformedResponse):
        next(stream)


def test_unreadable_second_page_keeps_the_first(make: Any, router: respx.Router) -> None:
    page2 = f"{BASE}/repositories/77/issues?page=2"
    router.get(ISSUES).mock(return_value=listing(issue(1), link=next_link(page2)))
    router.get(page2).mock(return_value=httpx.Response(200, content=b"oops"))
    stream = make().pull(None)
    assert [o.ref for o in next(stream).observations] == ["acme/api#1"]
    with pytest.raises(MalformedResponse):
        next(stream)


# -- state mapping -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("states", "item", "expected"),
    [
        ({}, issue(1), "open"),
        ({}, issue(1, state="open", state_reason="reopened"), "open"),
        ({}, issue(1, state="closed"), "done"),
        ({}, issue(1, state="closed", state_reason="completed"), "done"),
        ({}, issue(1, state="closed", state_reason="not_planned"), "cancelled"),
        ({}, issue(1, state="closed", state_reason="duplicate"), "cancelled"),
        ({"closed": "cancelled"}, issue(1, state="closed", state_reason="completed"), "cancelled"),
        (
            {"closed:not_planned": "done"},
            issue(1, state="closed", state_reason="not_planned"),
            "done",
        ),
        ({"label:blocked": "blocked"}, issue(1, labels=("bug", "Blocked")), "blocked"),
        ({"label:blocked": "blocked"}, issue(1, labels=("bug",)), "open"),
        # a closed issue is decided by its state alone, whatever labels were left on it
        ({"label:blocked": "blocked"}, issue(1, state="closed", labels=("blocked",)), "done"),
        # the first rule in config order wins
        (
            {"label:wip": "in_progress", "label:blocked": "blocked"},
            issue(1, labels=("blocked", "wip")),
            "in_progress",
        ),
        (
            {"label:blocked": "blocked", "label:wip": "in_progress"},
            issue(1, labels=("blocked", "wip")),
            "blocked",
        ),
        ({"label:in progress": "in_progress"}, issue(1, labels=("In Progress",)), "in_progress"),
    ],
)
def test_state_mapping(
    make: Any, router: respx.Router, states: dict[str, str], item: Any, expected: str
) -> None:
    router.get(ISSUES).mock(return_value=listing(item))
    [obs] = observations(pull(make(states=states)))
    assert obs.state == expected


# -- errors, retries and rate limits ----------------------------------------------------


def test_server_error_is_retried(make: Any, router: respx.Router, sleeps: list[float]) -> None:
    route = router.get(ISSUES).mock(
        side_effect=[httpx.Response(502, text="bad gateway"), listing(issue(1))]
    )
    adapter = make()
    assert len(observations(pull(adapter))) == 1
    assert route.call_count == 2
    assert sleeps == [0.5]
    assert adapter.request_counts() == {"GET 502": 1, "GET 200": 1}


def test_not_found_is_fatal_and_not_retried(
    make: Any, router: respx.Router, sleeps: list[float]
) -> None:
    route = router.get(ISSUES).mock(return_value=httpx.Response(404, json={"message": "Not Found"}))
    with pytest.raises(FatalError, match="404") as info:
        pull(make())
    assert not isinstance(info.value, RetriableError)
    assert route.call_count == 1
    assert sleeps == []


def test_retry_after_is_honoured(make: Any, router: respx.Router, sleeps: list[float]) -> None:
    route = router.get(ISSUES).mock(
        side_effect=[httpx.Response(429, headers={"retry-after": "7"}), listing(issue(1))]
    )
    assert len(observations(pull(make()))) == 1
    assert route.call_count == 2
    assert sleeps == [7.0]


def _primary(reset_in: float) -> httpx.Response:
    return httpx.Response(
        403,
        json={"message": "API rate limit exceeded for user ID 1."},
        headers={
            "x-ratelimit-remaining": "0",
            "x-ratelimit-limit": "5000",
            "x-ratelimit-reset": str(int(time.time() + reset_in)),
        },
    )


def test_primary_limit_waits_until_reset_when_short(
    make: Any, router: respx.Router, sleeps: list[float]
) -> None:
    router.get(ISSUES).mock(side_effect=[_primary(5), listing(issue(1))])
    assert len(observations(pull(make()))) == 1
    [wait] = sleeps
    assert 4 <= wait <= 7


def test_primary_limit_ends_the_cycle_until_reset_when_long(
    make: Any, router: respx.Router, sleeps: list[float]
) -> None:
    route = router.get(ISSUES).mock(return_value=_primary(3600))
    adapter = make()
    with pytest.raises(RateLimited) as info:
        pull(adapter)
    expected = datetime.now(UTC) + timedelta(seconds=3600)
    assert abs((info.value.retry_at - expected).total_seconds()) < 10
    assert route.call_count == 1
    assert sleeps == []
    budget = adapter.rate_budget()
    assert budget is not None
    assert (budget.remaining, budget.limit) == (0, 5000)


def _secondary(**headers: str) -> httpx.Response:
    return httpx.Response(
        403,
        json={
            "message": "You have exceeded a secondary rate limit. Please wait a few minutes.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits",
        },
        headers=headers,
    )


def test_secondary_limit_honours_retry_after(
    make: Any, router: respx.Router, sleeps: list[float]
) -> None:
    router.get(ISSUES).mock(side_effect=[_secondary(**{"retry-after": "3"}), listing(issue(1))])
    assert len(observations(pull(make()))) == 1
    assert sleeps == [3.0]


def test_secondary_limit_retry_after_wins_over_the_primary_reset(
    make: Any, router: respx.Router, sleeps: list[float]
) -> None:
    # GitHub's order for a secondary limit: retry-after first, then the reset time.
    limited = _secondary(
        **{
            "retry-after": "2",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": str(int(time.time() + 3600)),
        }
    )
    router.get(ISSUES).mock(side_effect=[limited, listing(issue(1))])
    assert len(observations(pull(make()))) == 1
    assert sleeps == [2.0]


def test_forbidden_with_retry_after_is_waited_out(
    make: Any, router: respx.Router, sleeps: list[float]
) -> None:
    # retry-after comes only with a rate limit, however the message is worded
    abuse = httpx.Response(
        403,
        json={"message": "You have triggered an abuse detection mechanism."},
        headers={"retry-after": "4"},
    )
    router.get(ISSUES).mock(side_effect=[abuse, listing(issue(1))])
    assert len(observations(pull(make()))) == 1
    assert sleeps == [4.0]


def test_secondary_limit_without_retry_after_waits_a_minute_then_longer(
    make: Any, router: respx.Router
) -> None:
    router.get(ISSUES).mock(return_value=_secondary())
    adapter = make()
    waits = []
    for _ in range(2):
        started = datetime.now(UTC)
        with pytest.raises(RateLimited) as info:
            pull(adapter)
        waits.append((info.value.retry_at - started).total_seconds())
    assert 59 <= waits[0] <= 65
    assert 119 <= waits[1] <= 125
    # a request that gets through resets the back-off
    router.get(ISSUES).mock(side_effect=[listing(), _secondary()])
    pull(adapter)
    started = datetime.now(UTC)
    with pytest.raises(RateLimited) as info:
        pull(adapter)
    assert (info.value.retry_at - started).total_seconds() <= 65


def test_other_forbidden_is_fatal(make: Any, router: respx.Router, sleeps: list[float]) -> None:
    route = router.get(ISSUES).mock(
        return_value=httpx.Response(
            403,
            json={"message": "Resource not accessible by personal access token"},
            headers={"x-ratelimit-remaining": "4000"},
        )
    )
    with pytest.raises(FatalError) as info:
        pull(make())
    assert not isinstance(info.value, RetriableError)
    assert "not accessible" in str(info.value)
    assert route.call_count == 1
    assert sleeps == []


def test_rate_budget_from_last_response(make: Any, router: respx.Router) -> None:
    adapter = make()
    assert adapter.rate_budget() is None
    router.get(ISSUES).mock(
        return_value=httpx.Response(
            200,
            json=[],
            headers={
                "x-ratelimit-remaining": "4321",
                "x-ratelimit-limit": "5000",
                "x-ratelimit-reset": "1714564800",
            },
        )
    )
    pull(adapter)
    budget = adapter.rate_budget()
    assert budget is not None
    assert budget.remaining == 4321
    assert budget.limit == 5000
    assert budget.reset_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


# -- reading and writing owners ---------------------------------------------------------


def test_read_owners(make: Any, router: respx.Router) -> None:
    route = router.get(f"{ISSUES}/12").mock(
        return_value=httpx.Response(200, json=issue(12, assignees=("alice", "carol")))
    )
    assert make().read_owners("acme/api#12") == ("alice", "carol")
    assert route.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"


def test_read_owners_without_assignees_is_malformed(make: Any, router: respx.Router) -> None:
    router.get(f"{ISSUES}/12").mock(return_value=httpx.Response(200, json=_without("assignees")))
    with pytest.raises(MalformedResponse, match="owners are unknown"):
        make().read_owners("acme/api#12")


def test_read_owners_of_moved_issue_is_fatal(make: Any, router: respx.Router) -> None:
    router.get(f"{ISSUES}/12").mock(
        return_value=httpx.Response(
            301, headers={"location": f"{BASE}/repositories/9/issues/3"}, json={}
        )
    )
    with pytest.raises(FatalError, match="moved"):
        make().read_owners("acme/api#12")


@pytest.mark.parametrize("ref", ["acme/web#12", "acme/api#x", "acme/api", "12"])
def test_refs_of_other_repositories_are_refused(make: Any, ref: str) -> None:
    with pytest.raises(FatalError, match="not an issue of acme/api"):
        make().read_owners(ref)


def test_write_adds_then_removes_and_returns_final_owners(make: Any, router: respx.Router) -> None:
    path = f"{ISSUES}/12/assignees"
    post = router.post(path).mock(
        return_value=httpx.Response(201, json=issue(12, assignees=("alice", "carol", "bob")))
    )
    router.get(f"{ISSUES}/12").mock(
        return_value=httpx.Response(200, json=issue(12, assignees=("alice", "carol", "bob")))
    )
    delete = router.delete(path).mock(
        return_value=httpx.Response(200, json=issue(12, assignees=("carol", "bob")))
    )
    adapter = make()
    owners = adapter.write_owner("acme/api#12", "bob", ("alice",), HANDOFF)
    assert owners == ("carol", "bob")
    assert json.loads(post.calls.last.request.content) == {"assignees": ["bob"]}
    assert json.loads(delete.calls.last.request.content) == {"assignees": ["alice"]}
    assert post.calls.last.request.headers["content-type"] == "application/json"
    # The owners are read again right before writing: alice was still there.
    order = [call.request.method for call in router.calls]
    assert order == ["GET", "POST", "DELETE"]
    assert adapter.gone_at_write == ()


def test_a_removal_already_made_by_someone_else_is_reported_and_nothing_written(
    make: Any, router: respx.Router
) -> None:
    """A DELETE of an assignee who is gone answers like any other: only the read right
    before writing shows that a person took alice off, and then nothing is written."""
    path = f"{ISSUES}/12/assignees"
    post = router.post(path).mock(
        return_value=httpx.Response(201, json=issue(12, assignees=("bob",)))
    )
    router.get(f"{ISSUES}/12").mock(return_value=httpx.Response(200, json=issue(12)))
    delete = router.delete(path).mock(return_value=httpx.Response(200, json=issue(12)))
    adapter = make()
    assert adapter.write_owner("acme/api#12", "bob", ("alice",), HANDOFF) == ()
    assert adapter.gone_at_write == ("alice",)
    assert post.call_count == 0
    assert delete.call_count == 0


def test_write_only_removes_when_nobody_is_added(make: Any, router: respx.Router) -> None:
    path = f"{ISSUES}/12/assignees"
    post = router.post(path).mock(return_value=httpx.Response(201, json=issue(12)))
    router.get(f"{ISSUES}/12").mock(
        return_value=httpx.Response(200, json=issue(12, assignees=("alice",)))
    )
    delete = router.delete(path).mock(return_value=httpx.Response(200, json=issue(12)))
    assert make().write_owner("acme/api#12", None, ("alice",), HANDOFF) == ()
    assert post.call_count == 0
    assert json.loads(delete.calls.last.request.content) == {"assignees": ["alice"]}


def test_write_only_adds_when_nobody_is_removed(make: Any, router: respx.Router) -> None:
    path = f"{ISSUES}/12/assignees"
    router.post(path).mock(return_value=httpx.Response(201, json=issue(12, assignees=("Bob",))))
    delete = router.delete(path).mock(return_value=httpx.Response(200, json=issue(12)))
    # logins are case-insensitive on GitHub: "bob" was assigned as "Bob"
    assert make().write_owner("acme/api#12", "bob", (), HANDOFF) == ("Bob",)
    assert delete.call_count == 0


def test_silently_ignored_assignee_is_a_fatal_error(make: Any, router: respx.Router) -> None:
    path = f"{ISSUES}/12/assignees"
    router.get(f"{ISSUES}/12").mock(
        return_value=httpx.Response(200, json=issue(12, assignees=("alice",)))
    )
    router.post(path).mock(return_value=httpx.Response(201, json=issue(12, assignees=("alice",))))
    delete = router.delete(path).mock(return_value=httpx.Response(200, json=issue(12)))
    with pytest.raises(FatalError) as info:
        make().write_owner("acme/api#12", "mallory", ("alice",), HANDOFF)
    assert not isinstance(info.value, RetriableError)
    assert "GitHub did not assign mallory to acme/api#12" in str(info.value)
    assert "push access" in str(info.value)
    # the previous owner is left in place rather than leaving the issue with nobody
    assert delete.call_count == 0


def test_writes_are_spaced(make: Any, router: respx.Router, sleeps: list[float]) -> None:
    path = f"{ISSUES}/12/assignees"
    router.post(path).mock(return_value=httpx.Response(201, json=issue(12, assignees=("bob",))))
    router.get(f"{ISSUES}/12").mock(
        return_value=httpx.Response(200, json=issue(12, assignees=("alice", "bob")))
    )
    router.delete(path).mock(return_value=httpx.Response(200, json=issue(12, assignees=("bob",))))
    adapter = make(write_spacing=1.0)
    adapter.write_owner("acme/api#12", "bob", ("alice",), HANDOFF)
    assert len(sleeps) == 1
    assert 0.5 < sleeps[0] <= 1.0
    adapter.write_owner("acme/api#12", "bob", (), HANDOFF)
    assert len(sleeps) == 2
    assert 0.5 < sleeps[1] <= 1.0


def test_rejected_write_is_fatal(make: Any, router: respx.Router) -> None:
    router.post(f"{ISSUES}/12/assignees").mock(
        return_value=httpx.Response(422, json={"message": "Validation Failed"})
    )
    with pytest.raises(FatalError, match="422"):
        make().write_owner("acme/api#12", "bob", (), HANDOFF)


# -- secrets ---------------------------------------------------------------------------


def test_token_never_appears_in_errors_or_the_trace(
    make: Any, router: respx.Router, tmp_path: Path
) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        # a hostile or broken server that reflects the credentials back
        return httpx.Response(401, text=f"bad credentials: {request.headers['authorization']}")

    router.get(ISSUES).mock(side_effect=echo)
    router.get(f"{ISSUES}/3").mock(
        return_value=httpx.Response(200, text=f"not json {TOKEN}", headers={"x-token": TOKEN})
    )
    trace_path = tmp_path / "trace.jsonl"
    adapter = make(trace=TraceWriter(trace_path))
    messages = []
    for action in (lambda: pull(adapter), lambda: adapter.read_owners("acme/api#3")):
        with pytest.raises(SourceError) as info:
            action()
        messages.append(str(info.value))
    assert "401" in messages[0]
    assert "not JSON" in messages[1]
    assert all(TOKEN not in m for m in messages)
    trace = trace_path.read_text()
    assert len(trace.splitlines()) == 2
    assert TOKEN not in trace
    assert "REDACTED" in trace


@pytest.mark.skipif(not CONTRACT.exists(), reason="../shared/contract is not present")
def test_traffic_matches_githubs_description(
    make: Any, router: respx.Router, tmp_path: Path
) -> None:
    page2 = (
        f"{BASE}/repositories/77/issues?state=all&sort=updated&direction=asc&per_page=100&page=2"
    )
    router.get(ISSUES).mock(
        return_value=listing(issue(1, assignees=("alice",)), link=next_link(page2))
    )
    router.get(page2).mock(return_value=listing(issue(2, T1, state="closed")))
    router.get(f"{ISSUES}/2").mock(
        return_value=httpx.Response(200, json=issue(2, T1, assignees=("a",)))
    )
    path = f"{ISSUES}/2/assignees"
    router.post(path).mock(return_value=httpx.Response(201, json=issue(2, assignees=("a", "b"))))
    router.delete(path).mock(return_value=httpx.Response(200, json=issue(2, assignees=("b",))))
    router.get(f"{ISSUES}/1/events").mock(
        return_value=httpx.Response(200, json=[assigned_event(1, "alice", "carol", T0)])
    )
    trace_path = tmp_path / "trace.jsonl"
    adapter = make(trace=TraceWriter(trace_path))
    [first, _] = pull(adapter, {"since": T0, "seen": {}})
    assert (first.observations[0].owner_actor, first.observations[0].owner_changed_at) == (
        "carol",
        datetime.fromisoformat(T0),
    )
    adapter.read_owners("acme/api#2")
    adapter.write_owner("acme/api#2", "b", ("a",), HANDOFF)
    result = subprocess.run(
        [sys.executable, str(CONTRACT), str(trace_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # the write: a read right before it, the add, the removal
    assert "7 conforming, 0 not conforming" in result.stdout


def test_an_owner_change_takes_its_time_and_actor_from_the_issue_events(
    make: Any, router: respx.Router
) -> None:
    adapter = make()
    route = router.get(ISSUES)
    route.mock(return_value=listing(issue(1, T0, assignees=("alice",)), issue(2, T0)))
    [page] = pull(adapter)  # the first listing: an import, no events read
    # Later: #1 handed to bob by carol at T1; a label edit at T2 moved updated_at.
    route.mock(return_value=listing(issue(1, T2, assignees=("bob",)), issue(2, T2)))
    events = router.get(f"{ISSUES}/1/events").mock(
        return_value=httpx.Response(
            200,
            json=[
                assigned_event(1, "alice", "alice", T0),
                assigned_event(2, "bob", "carol", T1),
                assigned_event(3, "alice", "carol", T1, event="unassigned"),
            ],
        )
    )
    [page] = pull(adapter, page.cursor)
    one, two = page.observations
    assert (one.owner_actor, one.owner_changed_at) == ("carol", datetime.fromisoformat(T1))
    assert one.owner_time == datetime.fromisoformat(T1)  # not T2, the label edit
    assert (two.owner_actor, two.owner_changed_at) == (None, None)  # owner unchanged
    assert events.call_count == 1


def test_events_that_do_not_explain_the_assignees_leave_the_time_unknown(
    make: Any, router: respx.Router
) -> None:
    adapter = make()
    route = router.get(ISSUES)
    route.mock(return_value=listing(issue(1, T0, assignees=("alice",))))
    [page] = pull(adapter)
    route.mock(return_value=listing(issue(1, T2, assignees=("bob",))))
    router.get(f"{ISSUES}/1/events").mock(
        return_value=httpx.Response(200, json=[assigned_event(1, "alice", "alice", T0)])
    )
    [page] = pull(adapter, page.cursor)
    assert (page.observations[0].owner_actor, page.observations[0].owner_changed_at) == (
        None,
        None,
    )
