"""The Jira emulator over real HTTP: the behaviours adapters rely on, the pitfalls it
reproduces, and its faults."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from syncd.sandbox.jira import DEFAULT_EMAIL, DEFAULT_TOKEN, JiraEmulator, adf, link, text
from syncd.sandbox.server import Fault
from tests.clocks import FakeClock

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
FIELDS = "summary,status,assignee,reporter,description,created,updated"


def basic(email: str = DEFAULT_EMAIL, token: str = DEFAULT_TOKEN) -> str:
    return "Basic " + base64.b64encode(f"{email}:{token}".encode()).decode()


@pytest.fixture
def clock(jira_emulator: JiraEmulator) -> FakeClock:
    jira_emulator.clock = fake = FakeClock(T0)
    return fake


@pytest.fixture
def jira(jira_emulator: JiraEmulator, clock: FakeClock) -> JiraEmulator:
    jira_emulator.add_project("OPS")
    return jira_emulator


@pytest.fixture
def api(jira: JiraEmulator) -> Iterator[httpx.Client]:
    headers = {"authorization": basic(), "accept": "application/json"}
    with httpx.Client(base_url=jira.base_url + "/rest/api/3/", headers=headers) as c:
        yield c


def search(api: httpx.Client, jql: str, **params: Any) -> dict[str, Any]:
    response = api.get("search/jql", params={"jql": jql, "fields": FIELDS, **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def keys(body: dict[str, Any]) -> list[str]:
    return [i["key"] for i in body["issues"]]


def epoch_ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


# -- search --------------------------------------------------------------------------------
def test_search_pages_with_next_page_token_and_is_last(
    jira: JiraEmulator, api: httpx.Client, clock: FakeClock
) -> None:
    for n in range(5):
        jira.create_issue("OPS", f"issue {n}")
        clock.advance(1)
    jql = "project = OPS ORDER BY updated ASC"
    first = search(api, jql, maxResults=2)
    assert keys(first) == ["OPS-1", "OPS-2"]
    assert first["isLast"] is False
    assert "total" not in first
    second = search(api, jql, maxResults=2, nextPageToken=first["nextPageToken"])
    assert keys(second) == ["OPS-3", "OPS-4"]
    last = search(api, jql, maxResults=2, nextPageToken=second["nextPageToken"])
    assert keys(last) == ["OPS-5"]
    assert last["isLast"] is True
    assert "nextPageToken" not in last


def test_page_token_belongs_to_its_query(jira: JiraEmulator, api: httpx.Client) -> None:
    for n in range(3):
        jira.create_issue("OPS", f"issue {n}")
    token = search(api, "project = OPS", maxResults=1)["nextPageToken"]
    other = api.get(
        "search/jql", params={"jql": "project = WEB OR project = OPS", "nextPageToken": token}
    )
    assert other.status_code == 400
    assert "token" in other.json()["errorMessages"][0]


def test_default_fields_are_ids_only(jira: JiraEmulator, api: httpx.Client) -> None:
    jira.create_issue("OPS", "bare")
    body = api.get("search/jql", params={"jql": "project = OPS"}).json()
    assert body["issues"] == [{"id": "10001"}]


def test_issue_shape_and_timestamps(jira: JiraEmulator, api: httpx.Client) -> None:
    alice = jira.add_user("Alice Moreau", email="alice@example.com")
    bob = jira.add_user("Bob Okafor", email="bob@example.com", email_visible=True)
    jira.create_issue("OPS", "Printer", "on fire", assignee=alice, reporter=bob)
    (found,) = search(api, "key = OPS-1")["issues"]
    assert found["key"] == "OPS-1"
    assert found["self"] == f"{jira.base_url}/rest/api/3/issue/10001"
    fields = found["fields"]
    assert set(fields) == set(FIELDS.split(","))
    assert fields["updated"] == "2024-05-01T10:00:00.000+0000"
    assert fields["status"]["statusCategory"]["key"] == "new"
    assert fields["assignee"]["accountId"] == alice
    assert re.fullmatch(r"712020:[0-9a-f-]{36}", alice)
    assert "emailAddress" not in fields["assignee"]  # hidden by her profile settings
    assert fields["reporter"]["emailAddress"] == "bob@example.com"
    assert fields["description"] == {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": "on fire"}]}],
    }
    classic = jira.add_user("Old Timer", classic_id=True)
    assert re.fullmatch(r"[0-9a-f]{24}", classic)


def test_timestamps_are_in_the_api_users_zone() -> None:
    with JiraEmulator(time_zone="Europe/Paris", clock=lambda: T0) as jira:
        jira.add_project("OPS")
        jira.create_issue("OPS", "x")
        assert jira.issue("OPS-1")["fields"]["created"] == "2024-05-01T12:00:00.000+0200"


def test_epoch_millisecond_window_is_exact_and_inclusive(
    jira: JiraEmulator, api: httpx.Client, clock: FakeClock
) -> None:
    jira.create_issue("OPS", "early")
    clock.advance(0.25)
    jira.create_issue("OPS", "late")
    at = epoch_ms(T0 + timedelta(seconds=0.25))
    assert keys(search(api, f"project = OPS AND updated >= {at}")) == ["OPS-2"]
    assert keys(search(api, f"project = OPS AND updated > {at}")) == []


def test_minute_dates_are_read_in_the_users_zone(clock: FakeClock) -> None:
    # The pitfall: a "yyyy/MM/dd HH:mm" window has no seconds and means the searching
    # user's local time, so a client thinking in UTC skips four hours of changes here.
    with JiraEmulator(time_zone="America/New_York") as jira:
        jira.clock = clock
        jira.add_project("OPS")
        jira.create_issue("OPS", "made at 10:00:30 UTC")
        with httpx.Client(base_url=jira.base_url, headers={"authorization": basic()}) as c:

            def found(jql: str) -> list[str]:
                body = c.get("/rest/api/3/search/jql", params={"jql": jql, "fields": "key"})
                return [i["key"] for i in body.json()["issues"]]

            assert found('updated >= "2024/05/01 10:00"') == []  # 10:00 there is 14:00 UTC
            assert found('updated >= "2024/05/01 06:00"') == ["OPS-1"]
            assert found('updated >= "2024/05/01 06:01"') == []  # 06:00:30 cannot be said


def test_jql_subset(jira: JiraEmulator, api: httpx.Client) -> None:
    alice = jira.add_user("Alice")
    jira.add_project("WEB")
    jira.create_issue("OPS", "a", assignee=alice)
    jira.create_issue("OPS", "b", status="In Progress")
    jira.create_issue("WEB", "c", status="Done")
    assert keys(search(api, "project in (OPS, WEB) ORDER BY key DESC")) == [
        "WEB-1",
        "OPS-2",
        "OPS-1",
    ]
    assert keys(search(api, "project = OPS AND assignee IS EMPTY")) == ["OPS-2"]
    assert keys(search(api, f'assignee = "{alice}"')) == ["OPS-1"]
    assert keys(search(api, 'statusCategory = "In Progress" OR status = Done')) == [
        "OPS-2",
        "WEB-1",
    ]
    assert keys(search(api, "project = OPS AND NOT (status = 'To Do')")) == ["OPS-2"]


@pytest.mark.parametrize(
    ("jql", "message"),
    [
        ("ORDER BY updated", "Unbounded"),
        ("frobnicate = 3", "Field 'frobnicate' does not exist"),
        ("updated >= yesterday", "is invalid"),
        ("project = OPS ORDER BY summary", "Not able to sort"),
        ("project = (", "Expecting"),
    ],
)
def test_bad_jql_is_a_400(api: httpx.Client, jql: str, message: str) -> None:
    response = api.get("search/jql", params={"jql": jql})
    assert response.status_code == 400
    assert message in response.json()["errorMessages"][0]


def test_the_retired_search_answers_410(api: httpx.Client) -> None:
    response = api.get("search", params={"jql": "project = OPS"})
    assert response.status_code == 410
    assert "/rest/api/3/search/jql" in response.json()["errorMessages"][0]


def test_an_edit_mid_pagination_shifts_later_pages(
    jira: JiraEmulator, api: httpx.Client, clock: FakeClock
) -> None:
    for n in range(4):
        jira.create_issue("OPS", f"issue {n}")
        clock.advance(1)
    jql = "project = OPS ORDER BY updated ASC"
    first = search(api, jql, maxResults=2)
    jira.edit_issue("OPS-1", summary="edited")  # moves to the end of the order
    second = search(api, jql, maxResults=2, nextPageToken=first["nextPageToken"])
    # OPS-3 slid back onto page one, which was already read: an offset skips it.
    assert keys(first) + keys(second) == ["OPS-1", "OPS-2", "OPS-4", "OPS-1"]


def test_search_lag_hides_fresh_edits_from_search_only(clock: FakeClock) -> None:
    with JiraEmulator(search_lag=5, clock=clock) as jira:
        jira.add_project("OPS")
        jira.create_issue("OPS", "fresh")
        with httpx.Client(base_url=jira.base_url, headers={"authorization": basic()}) as c:
            params = {"jql": "project = OPS", "fields": "summary"}
            assert c.get("/rest/api/3/search/jql", params=params).json()["issues"] == []
            assert c.get("/rest/api/3/issue/OPS-1").status_code == 200
            clock.advance(5)
            assert len(c.get("/rest/api/3/search/jql", params=params).json()["issues"]) == 1


# -- issues, assignee and changelog --------------------------------------------------------
def test_get_issue_fields_and_404(jira: JiraEmulator, api: httpx.Client) -> None:
    jira.create_issue("OPS", "x")
    assert api.get("issue/OPS-1", params={"fields": "assignee"}).json()["fields"] == {
        "assignee": None
    }
    everything = api.get("issue/10001").json()
    assert everything["key"] == "OPS-1"
    assert {"project", "issuetype", "creator", "labels"} <= set(everything["fields"])
    missing = api.get("issue/OPS-99")
    assert missing.status_code == 404
    assert missing.json()["errorMessages"]


def test_put_assignee_changes_the_owner_and_logs_it(
    jira: JiraEmulator, api: httpx.Client, clock: FakeClock
) -> None:
    alice, bob = jira.add_user("Alice"), jira.add_user("Bob")
    jira.create_issue("OPS", "x", assignee=alice)
    clock.advance(60)
    response = api.put("issue/OPS-1/assignee", json={"accountId": bob})
    assert response.status_code == 204
    assert response.content == b""
    assert jira.assignee("OPS-1") == bob
    issue = jira.issue("OPS-1")
    assert issue["fields"]["updated"] == "2024-05-01T10:01:00.000+0000"
    (entry,) = jira.history("OPS-1")
    assert entry["created"] == "2024-05-01T10:01:00.000+0000"
    assert entry["items"] == [
        {
            "field": "assignee",
            "fieldtype": "jira",
            "fieldId": "assignee",
            "from": alice,
            "fromString": "Alice",
            "to": bob,
            "toString": "Bob",
        }
    ]
    clock.advance(60)
    api.put("issue/OPS-1/assignee", json={"accountId": bob})  # the same: nothing changes
    assert len(jira.history("OPS-1")) == 1
    assert jira.issue("OPS-1")["fields"]["updated"] == "2024-05-01T10:01:00.000+0000"


def test_null_unassigns_and_minus_one_is_the_default(jira: JiraEmulator, api: httpx.Client) -> None:
    alice = jira.add_user("Alice")
    jira.create_issue("OPS", "x", assignee=alice)
    assert api.put("issue/OPS-1/assignee", json={"accountId": None}).status_code == 204
    assert jira.assignee("OPS-1") is None
    jira.set_assignee("OPS-1", alice)
    assert api.put("issue/OPS-1/assignee", json={"accountId": "-1"}).status_code == 204
    assert jira.assignee("OPS-1") is None


def test_unassignable_users_are_refused(jira: JiraEmulator, api: httpx.Client) -> None:
    gone = jira.add_user("Gone", active=False)
    jira.create_issue("OPS", "x")
    for body in ({"accountId": gone}, {"accountId": "nobody"}):
        refused = api.put("issue/OPS-1/assignee", json=body)
        assert refused.status_code == 400
        assert "cannot be assigned" in refused.json()["errors"]["assignee"]
    assert api.put("issue/OPS-1/assignee", json={"name": "bob"}).status_code == 400


def test_changelog_pages(jira: JiraEmulator, api: httpx.Client, clock: FakeClock) -> None:
    alice, bob = jira.add_user("Alice"), jira.add_user("Bob")
    jira.create_issue("OPS", "x", assignee=alice)
    for who in (bob, alice, bob):
        clock.advance(1)
        jira.set_assignee("OPS-1", who, by=alice)
    jira.transition("OPS-1", "Done")
    first = api.get("issue/OPS-1/changelog", params={"maxResults": 3}).json()
    assert (first["total"], first["isLast"], len(first["values"])) == (4, False, 3)
    assert first["nextPage"].endswith("startAt=3&maxResults=3")
    assert first["values"][0]["author"]["accountId"] == alice
    rest = api.get("issue/OPS-1/changelog", params={"startAt": 3}).json()
    assert rest["isLast"] is True
    assert "nextPage" not in rest
    assert rest["values"][0]["items"][0]["field"] == "status"


def test_bulk_changelog_filters_fields_and_pages(
    jira: JiraEmulator, api: httpx.Client, clock: FakeClock
) -> None:
    alice, bob = jira.add_user("Alice"), jira.add_user("Bob")
    jira.create_issue("OPS", "one", assignee=alice)
    jira.create_issue("OPS", "two", assignee=alice)
    clock.advance(1)
    jira.set_assignee("OPS-1", bob)
    jira.transition("OPS-1", "In Progress")
    jira.set_assignee("OPS-2", bob)
    body = {"issueIdsOrKeys": ["OPS-1", "10002"], "fieldIds": ["assignee"], "maxResults": 1}
    first = api.post("changelog/bulkfetch", json=body).json()
    assert first["issueChangeLogs"][0]["issueId"] == "10001"
    assert [h["items"][0]["field"] for h in first["issueChangeLogs"][0]["changeHistories"]] == [
        "assignee"
    ]
    second = api.post(
        "changelog/bulkfetch", json={**body, "nextPageToken": first["nextPageToken"]}
    ).json()
    assert second["issueChangeLogs"][0]["issueId"] == "10002"
    assert "nextPageToken" not in second


def test_off_contract_requests_get_jira_errors() -> None:
    # Malformed on purpose, so this emulator records nothing to the contract trace.
    with (
        JiraEmulator() as jira,
        httpx.Client(
            base_url=jira.base_url + "/rest/api/3/", headers={"authorization": basic()}
        ) as api,
    ):
        empty = api.post("changelog/bulkfetch", json={"issueIdsOrKeys": []})
        assert empty.status_code == 400
        assert "issueIdsOrKeys" in empty.json()["errorMessages"][0]
        too_big = api.post("changelog/bulkfetch", json={"issueIdsOrKeys": ["X-1"], "maxResults": 0})
        assert too_big.status_code == 400
        not_json = api.put(
            "issue/OPS-1/assignee", content=b"{", headers={"content-type": "application/json"}
        )
        assert not_json.status_code in (400, 404)
        bad_size = api.get("search/jql", params={"jql": "key = X-1", "maxResults": "lots"})
        assert bad_size.status_code == 400
        empty = api.get("search/jql", params={"jql": ""})
        assert "Unbounded JQL queries are not allowed" in empty.json()["errorMessages"][0]
        assert not jira.errors


def test_creation_leaves_no_changelog(jira: JiraEmulator) -> None:
    alice = jira.add_user("Alice")
    jira.create_issue("OPS", "born assigned", assignee=alice)
    assert jira.history("OPS-1") == []


def test_description_edits_are_logged(jira: JiraEmulator) -> None:
    key = jira.create_issue("OPS", "x", adf([text("see "), link("this", "https://example.com")]))
    jira.edit_issue(key, description="plain now", summary="y")
    assert [i["field"] for i in jira.history(key)[0]["items"]] == ["summary", "description"]
    assert jira.issue(key)["fields"]["description"] == adf("plain now")


# -- users ---------------------------------------------------------------------------------
def test_myself_and_user_search(jira: JiraEmulator, api: httpx.Client) -> None:
    me = api.get("myself").json()
    assert me["accountId"] == jira.bot
    assert me["emailAddress"] == DEFAULT_EMAIL  # your own address is always shown
    carol = jira.add_user("Carol Diaz", email="carol@example.com", email_visible=True)
    jira.add_user("Dan Hidden", email="dan@example.com")
    assert [u["accountId"] for u in api.get("user/search", params={"query": "car"}).json()] == [
        carol
    ]
    assert api.get("user/search", params={"query": "carol@ex"}).json()[0]["accountId"] == carol
    assert api.get("user/search", params={"query": "dan@"}).json() == []
    assert api.get("user/search", params={"accountId": carol}).json()[0]["displayName"] == (
        "Carol Diaz"
    )
    assert api.get("user/search").status_code == 400


# -- auth, rate limits and faults ----------------------------------------------------------
@pytest.mark.parametrize(
    "authorization", [None, basic(token="wrong"), f"Bearer {DEFAULT_TOKEN}", "Basic !!!"]
)
def test_bad_credentials_are_401(jira: JiraEmulator, authorization: str | None) -> None:
    headers = {"authorization": authorization} if authorization else {}
    with httpx.Client(headers=headers) as c:
        response = c.get(f"{jira.base_url}/rest/api/3/myself")
    assert response.status_code == 401


def test_rate_limit_headers_and_429_when_spent(jira: JiraEmulator, api: httpx.Client) -> None:
    ok = api.get("myself")
    assert int(ok.headers["x-ratelimit-remaining"]) == int(ok.headers["x-ratelimit-limit"]) - 1
    jira.set_rate_limit(0, reset_in=30)
    limited = api.get("myself")
    assert limited.status_code == 429
    assert 25 <= int(limited.headers["retry-after"]) <= 30
    reset = datetime.fromisoformat(limited.headers["x-ratelimit-reset"].replace("Z", "+00:00"))
    assert reset > datetime.now(UTC)
    assert limited.headers["ratelimit-reason"] == "jira-quota-global-based"


def test_fault_knobs(jira: JiraEmulator, api: httpx.Client) -> None:
    jira.faults.add(Fault(status=429, headers={"retry-after": "2"}, path="/search/jql$"))
    jira.faults.add(Fault(status=503, headers={"retry-after": "1"}, method="PUT"))
    limited = api.get("search/jql", params={"jql": "project = OPS"})
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "2")
    assert api.put("issue/OPS-1/assignee", json={"accountId": None}).status_code == 503
    jira.faults.add(Fault(drop=True))
    with pytest.raises(httpx.RemoteProtocolError):
        api.get("myself")
    jira.faults.add(Fault(delay=0.2))
    started = time.monotonic()
    assert api.get("myself").status_code == 200
    assert time.monotonic() - started >= 0.2
