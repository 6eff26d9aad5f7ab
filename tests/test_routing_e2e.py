"""Routing and follow-through end to end: the real daemon process, GitHub, Jira and Trello
emulators, the operator CLI. Builds on the three-tool world of test_crosstool_e2e (acme/api#12
and OPS-7, linked, owned by Alice; the Trello board with nobody's card yet)."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.sandbox.jira import adf, link, text
from tests.test_crosstool_e2e import PEOPLE, REPO, World, wait_for, world

__all__ = ["world"]

pytestmark = pytest.mark.slow

ROUTING = """
[[teams]]
id = "printers"
members = ["bob", "carol"]

[[routing]]
name = "printer issues"
when = { labels = "printer" }
assign = { team = "printers" }
"""


def configure(world: World, extra: str) -> Path:
    path = world.write_config(carol_on_trello=True)
    path.write_text(path.read_text() + extra)
    return path


def events(world: World, kind: str) -> list[tuple[object, ...]]:
    return world.query(
        "SELECT r.key, e.source, e.from_value, e.to_value, e.note, e.detail FROM events e "
        "JOIN requests r ON r.id = e.request_id WHERE e.kind = ? ORDER BY e.id",
        kind,
    )


def login(person: str) -> str:
    return PEOPLE[person][1]


def test_a_new_labelled_issue_is_routed_and_written_to_github_and_its_jira_issue(
    world: World,
) -> None:
    number = world.github.create_issue(REPO, "Printer jams on page two", labels=["printer"])
    # Its Jira twin declares it (a link to the GitHub issue), and is unassigned too.
    world.jira.create_issue(
        "OPS",
        "Printer jams",
        # "Tracked in" and the issue's URL on one line: a declaration.
        adf([text("Tracked in "), link("GitHub", f"https://github.com/{REPO}/issues/{number}")]),
    )
    world.start(configure(world, ROUTING))
    wait_for(
        lambda: (
            [a["login"] for a in world.github.issue(REPO, number)["assignees"]] == [login("bob")]
            and world.jira.assignee("OPS-8") == world.accounts["bob"]
        ),
        "the routed owner to reach GitHub and Jira",
        timeout=20,
    )
    routed = events(world, "owner_changed")
    assert [(e[1], e[3], e[4]) for e in routed if e[1] == "routing"] == [
        ("routing", "bob", "printer issues")
    ], world.logs()
    key = routed[-1][0]
    detail = world.show(str(key))
    assert sorted(lk["source"] for lk in detail["links"]) == ["github", "jira"]
    # Routed once: later cycles leave it be, and alice's #12 (owned) was never touched.
    wait_for(lambda: world.writeback_status("jira") == "done", "the Jira write to finish")
    assert world.stop() == 0
    assert [e for e in events(world, "owner_changed") if e[1] == "routing"] == routed[-1:]
    assert [a["login"] for a in world.github.issue(REPO, 12)["assignees"]] == [login("alice")]


def test_an_away_persons_delegate_receives_the_handoff_meant_for_them(world: World) -> None:
    world.start(configure(world, ""))
    wait_for(lambda: ["github", "jira"] in world.sources_by_request().values(), "OPS-7 linked")
    world.cli("away", "bob", "--until", "1d", "--delegate", "carol", "--note", "leave")
    # Alice hands OPS-7 to Bob in Jira; Bob is away, so Carol receives it everywhere.
    world.jira.set_assignee("OPS-7", world.accounts["bob"], by=world.accounts["alice"])
    wait_for(
        lambda: (
            [a["login"] for a in world.github.issue(REPO, 12)["assignees"]] == [login("carol")]
            and world.jira.assignee("OPS-7") == world.accounts["carol"]
        ),
        "Carol to own it in GitHub and Jira",
        timeout=20,
    )
    delegated = events(world, "delegated")
    assert [(e[2], e[3]) for e in delegated] == [("bob", "carol")], world.logs()
    assert "covering for bob" in str(delegated[0][4])
    people = {p["id"]: p for p in world.cli("people", "--json")["people"]}
    assert people["bob"]["away"]["delegate"] == "carol"
    assert world.stop() == 0


def test_a_handoff_is_accepted_by_the_new_owners_comment_in_jira(world: World) -> None:
    world.start(configure(world, '\n[acceptance]\naccept_within = "1h"\n'))
    wait_for(lambda: ["github", "jira"] in world.sources_by_request().values(), "OPS-7 linked")
    key = next(k for k, s in world.sources_by_request().items() if "jira" in s)
    world.cli("assign", key, "bob", "--note", "printer expert")
    wait_for(lambda: world.jira.assignee("OPS-7") == world.accounts["bob"], "Bob in Jira")
    waiting = world.cli("ls", "--unaccepted", "0s", "--json")
    assert [(r["key"], r["handoff"]["owner"]) for r in waiting] == [(key, "bob")]
    # Someone else's comment is no acceptance; Bob's is.
    world.jira.add_comment("OPS-7", "Is anyone on this?", by=world.accounts["dave"])
    world.jira.add_comment("OPS-7", "Looking into it now.", by=world.accounts["bob"])
    wait_for(lambda: events(world, "accepted") != [], "the acceptance", timeout=20)
    assert events(world, "accepted") == [(key, "jira", None, "bob", None, "comment in jira")]
    assert world.cli("ls", "--unaccepted", "0s", "--json") == []
    assert world.stop() == 0


def test_an_overdue_handoff_is_escalated_exactly_once_across_a_restart(world: World) -> None:
    extra = '\n[acceptance]\naccept_within = "2s"\n[escalation]\naction = "comment"\n'
    config = configure(world, extra)
    world.start(config)
    wait_for(lambda: ["github", "jira"] in world.sources_by_request().values(), "OPS-7 linked")
    key = next(k for k, s in world.sources_by_request().items() if "jira" in s)
    world.cli("assign", key, "bob")
    wait_for(lambda: events(world, "escalated") != [], "the escalation", timeout=20)
    overdue = world.cli("ls", "--unaccepted", "--json")
    assert [(r["key"], r["handoff"]["owner"]) for r in overdue] == [(key, "bob")]
    status = world.cli("status", "--json")
    assert status["follow_through"]["overdue_handoffs"] == 1

    def reminders() -> list[str]:
        return [c["body"] for c in world.github.comments(REPO, 12) if "Not picked up" in c["body"]]

    wait_for(lambda: len(reminders()) == 1, "the reminder on GitHub", timeout=20)
    assert "Bob Okafor, please act on it or hand it on" in reminders()[0]
    assert "Alice Moreau handed it over" in reminders()[0]
    assert world.stop() == 0
    world.start(config)  # a restart: the escalation is recorded, so it does not run again
    wait_for(
        lambda: world.query("SELECT count(*) FROM source_status WHERE last_poll_at > ?",
                            world.query("SELECT max(at) FROM events")[0][0])[0][0] >= 2,
        "a poll of each source after the restart",
        timeout=20,
    )  # fmt: skip
    import time

    time.sleep(3)  # a few more cycles
    assert world.stop() == 0
    assert [(e[0], e[3]) for e in events(world, "escalated")] == [(key, "bob")], world.logs()
    assert len(reminders()) == 1
