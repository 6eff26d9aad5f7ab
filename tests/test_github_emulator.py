"""The GitHub emulator over real HTTP: the behaviours adapters rely on, and its faults."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from syncd.http import TraceWriter
from syncd.sandbox.github import DEFAULT_TOKEN, GitHubEmulator
from syncd.sandbox.server import Emulator, Fault, Request, Response, json_response
from tests.clocks import FakeClock

REPO = "acme/api"
T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


def client(emulator: Emulator, token: str | None = DEFAULT_TOKEN, **kw: Any) -> httpx.Client:
    headers = {"accept": "application/vnd.github+json", "x-github-api-version": "2022-11-28"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=emulator.base_url + "/", headers=headers, **kw)


@pytest.fixture
def gh(github_emulator: GitHubEmulator) -> GitHubEmulator:
    github_emulator.add_repo(REPO, collaborators=["alice", "bob"])
    return github_emulator


@pytest.fixture
def api(gh: GitHubEmulator) -> Iterator[httpx.Client]:
    with client(gh) as c:
        yield c


@pytest.fixture
def clock(gh: GitHubEmulator) -> FakeClock:
    gh.clock = fake = FakeClock(T0)
    return fake


def numbers(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [item["number"] for item in response.json()]


# -- listing -------------------------------------------------------------------------------
def test_pages_follow_link_headers_through_repositories_id(
    gh: GitHubEmulator, api: httpx.Client
) -> None:
    for i in range(7):
        gh.create_issue(REPO, f"issue {i}")
    repo_id = gh.add_repo(REPO)
    first = api.get(
        f"repos/{REPO}/issues",
        params={"state": "all", "sort": "created", "direction": "asc", "per_page": 3},
    )
    assert numbers(first) == [1, 2, 3]
    assert set(first.links) == {"next", "last"}
    next_url = first.links["next"]["url"]
    assert next_url.startswith(f"{gh.base_url}/repositories/{repo_id}/issues?")
    assert "per_page=3" in next_url
    assert next_url.endswith("page=2")
    assert first.links["last"]["url"].endswith("page=3")

    middle = api.get(next_url)
    assert numbers(middle) == [4, 5, 6]
    assert set(middle.links) == {"prev", "next", "last", "first"}
    assert middle.headers["link"].index('rel="prev"') < middle.headers["link"].index('rel="first"')

    last = api.get(middle.links["next"]["url"])
    assert numbers(last) == [7]
    assert set(last.links) == {"prev", "first"}
    assert last.links["first"]["url"].endswith("page=1")


def test_per_page_defaults_to_30_and_is_capped_at_100(
    gh: GitHubEmulator, api: httpx.Client
) -> None:
    for i in range(105):
        gh.create_issue(REPO, f"issue {i}")
    assert len(numbers(api.get(f"repos/{REPO}/issues"))) == 30
    assert len(numbers(api.get(f"repos/{REPO}/issues", params={"per_page": 500}))) == 100
    single = api.get(f"repos/{REPO}/issues", params={"per_page": 100})
    assert single.links["last"]["url"].endswith("page=2")


def test_since_includes_the_boundary_and_sees_updates(
    gh: GitHubEmulator, api: httpx.Client, clock: FakeClock
) -> None:
    gh.create_issue(REPO, "old")
    clock.advance(10)
    gh.create_issue(REPO, "new")

    def since(when: datetime) -> list[int]:
        stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        params = {"state": "all", "since": stamp, "sort": "updated", "direction": "asc"}
        return numbers(api.get(f"repos/{REPO}/issues", params=params))

    assert since(T0) == [1, 2]
    assert since(T0 + timedelta(seconds=10)) == [2]  # updated_at == since is included
    assert since(T0 + timedelta(seconds=11)) == []
    clock.advance(10)
    gh.set_assignees(REPO, 1, ["alice"])
    assert since(T0 + timedelta(seconds=11)) == [1]
    assert gh.issue(REPO, 1)["updated_at"] == "2026-03-02T09:00:20Z"


def test_state_filter_defaults_to_open(gh: GitHubEmulator, api: httpx.Client) -> None:
    gh.create_issue(REPO, "open one")
    gh.create_issue(REPO, "done one")
    gh.close_issue(REPO, 2, reason="not_planned", by="alice")
    assert numbers(api.get(f"repos/{REPO}/issues")) == [1]
    closed = api.get(f"repos/{REPO}/issues", params={"state": "closed"}).json()
    assert [i["number"] for i in closed] == [2]
    assert closed[0]["state_reason"] == "not_planned"
    assert closed[0]["closed_at"] is not None
    assert "closed_by" not in closed[0]  # the list leaves it out, as GitHub does
    assert api.get(f"repos/{REPO}/issues/2").json()["closed_by"]["login"] == "alice"
    assert sorted(numbers(api.get(f"repos/{REPO}/issues", params={"state": "all"}))) == [1, 2]


def test_pull_requests_are_in_the_issue_list(gh: GitHubEmulator, api: httpx.Client) -> None:
    gh.create_issue(REPO, "a bug")
    pr = gh.create_pull_request(REPO, "a fix", assignees=["bob"])
    items = {i["number"]: i for i in api.get(f"repos/{REPO}/issues").json()}
    assert set(items) == {1, pr}
    assert "pull_request" not in items[1]
    assert items[pr]["pull_request"]["html_url"].endswith(f"/{REPO}/pull/{pr}")
    assert items[pr]["assignee"]["login"] == "bob"


def test_issue_carries_every_field_the_schema_requires(
    gh: GitHubEmulator, api: httpx.Client
) -> None:
    gh.create_issue(REPO, "shape", assignees=["alice"])
    issue = api.get(f"repos/{REPO}/issues/1").json()
    required = {
        "id", "node_id", "url", "repository_url", "labels_url", "comments_url", "events_url",
        "html_url", "number", "state", "state_reason", "title", "body", "user", "labels",
        "assignee", "assignees", "milestone", "locked", "active_lock_reason", "comments",
        "closed_at", "created_at", "updated_at", "closed_by", "author_association",
        "reactions", "timeline_url", "performed_via_github_app",
    }  # fmt: skip
    assert required <= issue.keys()
    assert issue["id"] > 2**31  # clients must not squeeze ids into 32 bits
    assert issue["url"] == f"{gh.base_url}/repos/{REPO}/issues/1"
    assert issue["user"]["login"] == "octocat"
    assert issue["user"]["type"] == "User"
    assert issue["body"] is None  # GitHub answers null for an empty body
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", issue["created_at"])


# -- conditional requests and rate limit ---------------------------------------------------
def test_etag_gives_304_that_costs_no_rate_limit(gh: GitHubEmulator, api: httpx.Client) -> None:
    gh.create_issue(REPO, "cached")
    first = api.get(f"repos/{REPO}/issues")
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    remaining = int(first.headers["x-ratelimit-remaining"])

    again = api.get(f"repos/{REPO}/issues", headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert int(again.headers["x-ratelimit-remaining"]) == remaining
    assert gh.rate_remaining == remaining

    gh.set_assignees(REPO, 1, ["alice"])
    changed = api.get(f"repos/{REPO}/issues", headers={"if-none-match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert int(changed.headers["x-ratelimit-remaining"]) == remaining - 1


def test_primary_rate_limit_runs_out(gh: GitHubEmulator, api: httpx.Client) -> None:
    gh.set_rate_limit(1, reset_in=120)
    ok = api.get(f"repos/{REPO}/issues")
    assert ok.status_code == 200
    assert ok.headers["x-ratelimit-remaining"] == "0"
    assert ok.headers["x-ratelimit-resource"] == "core"
    refused = api.get(f"repos/{REPO}/issues")
    assert refused.status_code == 403
    assert refused.json()["message"].startswith("API rate limit exceeded")
    assert int(refused.headers["x-ratelimit-reset"]) >= int(time.time()) + 100
    overview = api.get("rate_limit")  # free, so it still answers
    assert overview.status_code == 200
    assert overview.json()["resources"]["core"]["remaining"] == 0


# -- writing assignees ---------------------------------------------------------------------
def test_add_assignees_keeps_existing_and_ignores_non_collaborators(
    gh: GitHubEmulator, api: httpx.Client, clock: FakeClock
) -> None:
    gh.create_issue(REPO, "owned", assignees=["alice"])
    clock.advance(5)
    added = api.post(f"repos/{REPO}/issues/1/assignees", json={"assignees": ["bob", "mallory"]})
    assert added.status_code == 201
    assert [a["login"] for a in added.json()["assignees"]] == ["alice", "bob"]
    assert added.json()["updated_at"] == "2026-03-02T09:00:05Z"

    clock.advance(5)  # adding someone already there changes nothing, updated_at included
    same = api.post(f"repos/{REPO}/issues/1/assignees", json={"assignees": ["alice"]})
    assert same.json()["updated_at"] == "2026-03-02T09:00:05Z"


def test_add_assignees_stops_at_ten(gh: GitHubEmulator, api: httpx.Client) -> None:
    people = [f"dev{i}" for i in range(12)]
    gh.add_repo(REPO, collaborators=people)
    gh.create_issue(REPO, "crowded")
    added = api.post(f"repos/{REPO}/issues/1/assignees", json={"assignees": people})
    assert [a["login"] for a in added.json()["assignees"]] == people[:10]


def test_remove_assignees(gh: GitHubEmulator, api: httpx.Client) -> None:
    gh.create_issue(REPO, "handoff", assignees=["alice", "bob"])
    removed = api.request(
        "DELETE", f"repos/{REPO}/issues/1/assignees", json={"assignees": ["alice"]}
    )
    assert removed.status_code == 200
    assert [a["login"] for a in removed.json()["assignees"]] == ["bob"]
    assert gh.issue(REPO, 1)["assignee"]["login"] == "bob"


def test_patch_replaces_assignees_and_rejects_non_collaborators(
    gh: GitHubEmulator, api: httpx.Client
) -> None:
    gh.create_issue(REPO, "swap", assignees=["alice"])
    replaced = api.patch(f"repos/{REPO}/issues/1", json={"assignees": ["bob"]})
    assert replaced.status_code == 200
    assert [a["login"] for a in replaced.json()["assignees"]] == ["bob"]

    refused = api.patch(f"repos/{REPO}/issues/1", json={"assignees": ["mallory"]})
    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {"resource": "Issue", "field": "assignees", "code": "invalid", "value": "mallory"}
    ]
    assert gh.issue(REPO, 1)["assignees"][0]["login"] == "bob"


def test_patch_closes_and_reopens(gh: GitHubEmulator, api: httpx.Client) -> None:
    gh.create_issue(REPO, "lifecycle")
    closed = api.patch(
        f"repos/{REPO}/issues/1", json={"state": "closed", "state_reason": "not_planned"}
    ).json()
    assert (closed["state"], closed["state_reason"]) == ("closed", "not_planned")
    assert closed["closed_by"]["login"] == gh.login
    reopened = api.patch(f"repos/{REPO}/issues/1", json={"state": "open"}).json()
    assert (reopened["state"], reopened["state_reason"]) == ("open", "reopened")
    assert reopened["closed_at"] is None


def test_create_issue(gh: GitHubEmulator, api: httpx.Client) -> None:
    created = api.post(f"repos/{REPO}/issues", json={"title": "new", "assignees": ["alice"]})
    assert created.status_code == 201
    assert created.headers["location"] == f"{gh.base_url}/repos/{REPO}/issues/1"
    assert created.json()["user"]["login"] == gh.login


def test_unknown_issue_and_repo_are_404(gh: GitHubEmulator, api: httpx.Client) -> None:
    for path in (f"repos/{REPO}/issues/99", "repos/acme/nope/issues"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.json()["message"] == "Not Found"


def test_user_and_rate_limit(gh: GitHubEmulator, api: httpx.Client) -> None:
    assert api.get("user").json()["login"] == gh.login
    rate = api.get("rate_limit").json()
    assert rate["rate"] == rate["resources"]["core"]
    assert rate["rate"]["limit"] == 5000


# -- auth ----------------------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_bad_credentials_are_401(gh: GitHubEmulator, token: str | None) -> None:
    gh.create_issue(REPO, "secret")
    with client(gh, token=token) as c:
        response = c.get(f"repos/{REPO}/issues")
    assert response.status_code == 401
    assert response.json()["message"] == "Bad credentials"
    assert gh.rate_remaining == 5000


def test_token_scheme_is_accepted(gh: GitHubEmulator) -> None:
    with httpx.Client(headers={"authorization": f"token {DEFAULT_TOKEN}"}) as c:
        assert c.get(f"{gh.base_url}/repos/{REPO}/issues").status_code == 200


# -- faults --------------------------------------------------------------------------------
def test_status_fault_is_consumed_then_normal(gh: GitHubEmulator, api: httpx.Client) -> None:
    body = {"message": "You have exceeded a secondary rate limit."}
    gh.faults.add(Fault(status=429, headers={"retry-after": "1"}, body=body, path=r"/issues$"))
    limited = api.get(f"repos/{REPO}/issues")
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1"
    assert limited.json() == body
    assert api.get(f"repos/{REPO}/issues").status_code == 200
    assert gh.count("GET", "/repos/{owner}/{repo}/issues", 429) == 1
    assert gh.count("GET", "/repos/{owner}/{repo}/issues", 200) == 1


def test_fault_matches_method_and_path_in_order(gh: GitHubEmulator, api: httpx.Client) -> None:
    gh.create_issue(REPO, "x")
    gh.faults.add(Fault(status=503, method="POST", times=None))
    gh.faults.add(Fault(status=502, path=r"/issues/\d+$", times=2))
    assert api.get(f"repos/{REPO}/issues").status_code == 200
    assert [api.get(f"repos/{REPO}/issues/1").status_code for _ in range(3)] == [502, 502, 200]
    for _ in range(2):
        posted = api.post(f"repos/{REPO}/issues/1/assignees", json={"assignees": ["bob"]})
        assert posted.status_code == 503
    assert len(gh.faults) == 1  # the unlimited one stays until cleared
    gh.faults.clear()
    assert api.post(f"repos/{REPO}/issues/1/assignees", json={"assignees": []}).status_code == 201


def test_delay_fault_is_slow_and_can_time_out(gh: GitHubEmulator, api: httpx.Client) -> None:
    gh.faults.add(Fault(delay=0.3))
    started = time.monotonic()
    assert api.get(f"repos/{REPO}/issues").status_code == 200
    assert time.monotonic() - started >= 0.3
    gh.faults.add(Fault(delay=2))
    with pytest.raises(httpx.ReadTimeout):
        api.get(f"repos/{REPO}/issues", timeout=0.2)


def test_drop_fault_closes_without_a_response(gh: GitHubEmulator, api: httpx.Client) -> None:
    gh.faults.add(Fault(drop=True))
    with pytest.raises(httpx.RemoteProtocolError):
        api.get(f"repos/{REPO}/issues")
    assert gh.count(status=0) == 1
    assert api.get(f"repos/{REPO}/issues").status_code == 200


def test_malformed_fault_is_200_with_a_body_that_is_not_json(
    gh: GitHubEmulator, api: httpx.Client
) -> None:
    gh.faults.add(Fault(malformed=True))
    response = api.get(f"repos/{REPO}/issues")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


# -- the trace and the server itself -------------------------------------------------------
def test_trace_records_redacted_exchanges_but_not_injected_faults(
    gh: GitHubEmulator, api: httpx.Client, contract_trace: TraceWriter
) -> None:
    gh.faults.add(Fault(malformed=True))
    api.get(f"repos/{REPO}/issues")
    api.get(f"repos/{REPO}/issues", params={"state": "all"})
    lines = contract_trace.path.read_text().splitlines()
    mine = [r for r in map(json.loads, lines) if r["base_url"] == gh.base_url]
    assert [r["url"] for r in mine] == [f"{gh.base_url}/repos/{REPO}/issues?state=all"]
    record = mine[0]
    assert record["service"] == "github"
    assert record["request_headers"]["authorization"] == "REDACTED"
    assert DEFAULT_TOKEN not in json.dumps(record)
    assert record["status"] == 200
    assert record["response_headers"]["etag"].startswith('W/"')
    assert json.loads(record["response_body"]) == []


def test_off_contract_requests_get_github_errors() -> None:
    # Deliberately malformed requests, so this emulator records nothing to the contract trace.
    with GitHubEmulator() as gh, client(gh) as api:
        gh.add_repo(REPO)
        gh.create_issue(REPO, "x")
        bad_json = api.patch(
            f"repos/{REPO}/issues/1", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert bad_json.status_code == 400
        assert bad_json.json()["message"] == "Problems parsing JSON"
        missing = api.post(f"repos/{REPO}/issues", json={"body": "no title"})
        assert missing.status_code == 422
        assert missing.json()["errors"][0]["code"] == "missing_field"
        bad_state = api.get(f"repos/{REPO}/issues", params={"state": "sideways"})
        assert bad_state.status_code == 422
        bad_since = api.get(f"repos/{REPO}/issues", params={"since": "yesterday"})
        assert bad_since.status_code == 422
        not_a_list = api.patch(f"repos/{REPO}/issues/1", json={"assignees": "alice"})
        assert not_a_list.status_code == 422
        assert not gh.errors


def test_stop_is_quick_with_open_connections_and_a_pending_delay() -> None:
    gh = GitHubEmulator().start()
    gh.add_repo(REPO)
    outcome: list[object] = []
    with client(gh) as idle, client(gh) as slow:
        assert idle.get(f"repos/{REPO}/issues").status_code == 200  # stays open (keep-alive)
        gh.faults.add(Fault(delay=30))
        waiter = threading.Thread(
            target=lambda: outcome.append(_attempt(slow, f"repos/{REPO}/issues"))
        )
        waiter.start()
        deadline = time.monotonic() + 5
        while len(gh.faults) and time.monotonic() < deadline:  # taken: the delay has begun
            time.sleep(0.01)
        started = time.monotonic()
        gh.stop()
        assert time.monotonic() - started < 2
        waiter.join(5)
        assert not waiter.is_alive()
    # The slow request was cut short: either an error or an answer, but not a 30 s wait.
    assert len(outcome) == 1


def _attempt(c: httpx.Client, path: str) -> object:
    try:
        return c.get(path).status_code
    except httpx.HTTPError as exc:
        return exc


def test_framework_routes_templates_and_reports_crashes() -> None:
    class Echo(Emulator):
        prefix = "/api"

        def __init__(self) -> None:
            super().__init__()
            self.route("GET", "/things/{id:\\d+}", self.thing)
            self.route("POST", "/boom", self.boom)

        def thing(self, request: Request) -> Response:
            return json_response(200, {"id": request.params["id"], "q": request.query})

        def boom(self, request: Request) -> Response:
            raise RuntimeError("handler bug")

    with Echo() as emu, httpx.Client(base_url=emu.base_url + "/") as c:
        assert c.get("things/7", params={"a": ["1", "2"]}).json() == {
            "id": "7",
            "q": {"a": ["1", "2"]},
        }
        assert c.get("things/x").status_code == 404
        assert c.get(f"http://127.0.0.1:{emu.port}/elsewhere").status_code == 404
        assert c.post("boom").status_code == 500
        assert emu.count("GET", "/things/{id}", 200) == 1
        assert [str(e) for e in emu.errors] == ["handler bug"]
