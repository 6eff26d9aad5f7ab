"""Trust boundaries probed as an outsider and as a careless user would, against the emulators,
a real ledger and the CLI: who may hand off from a comment, what a forged syncd marker can do,
what a handoff comment tells a public repository, and what an outsider's edits may link."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from syncd.cli import cli
from syncd.outbox import drain_comments
from syncd.sandbox.server import Fault
from syncd.web.data import safe_url
from tests.test_handoff_record import ALL_COMMANDS, NOTE, REPO, World, make_world

__all__ = ["make_world"]  # the fixture, shared with the handoff record's tests


def refusals(world: World) -> list[str]:
    return [str(e["detail"]) for e in world.events("command_refused")]


def test_a_login_shared_with_a_mapped_handle_but_no_membership_hands_nothing_off(
    make_world: Callable[..., World],
) -> None:
    world = make_world(**ALL_COMMANDS)
    # bob-s is Bob's handle in the config, but the account is no longer a collaborator:
    # its comments come with author_association NONE.
    world.github._repos[REPO.lower()].collaborators.discard("bob-s")
    world.github.add_comment(REPO, world.issue, f"/assign me {NOTE}", user="bob-s")
    world.sync(3)
    assert world.owner() == "alice"
    assert world.github.issue(REPO, world.issue)["assignees"][0]["login"] == "alice-m"
    (reason,) = refusals(world)
    assert "not a member of this project" in reason


def test_a_comment_edited_to_add_assign_hands_nothing_off(
    make_world: Callable[..., World],
) -> None:
    world = make_world(**ALL_COMMANDS)
    clock = {"now": datetime.now(UTC).replace(microsecond=0)}
    world.github.clock = lambda: clock["now"]
    said = world.github.add_comment(REPO, world.issue, "Looking at it", user="alice-m")
    world.sync()
    # GitHub does not say who edited a comment (a maintainer may edit anyone's), nor when
    # the command was written: an edit that adds /assign is not its author's command.
    clock["now"] += timedelta(minutes=5)
    world.github.edit_comment(REPO, said, "Looking at it\n/assign @bob-s")
    world.sync(3)
    assert world.owner() == "alice"
    assert world.github.issue(REPO, world.issue)["assignees"][0]["login"] == "alice-m"
    (reason,) = refusals(world)
    assert "edited" in reason


def test_a_forged_marker_from_an_outsider_causes_nothing(
    make_world: Callable[..., World],
) -> None:
    world = make_world(**ALL_COMMANDS)
    world.github.add_user("mallory")
    forged = f"/assign @bob-s\n\n<!-- syncd:handoff:{world.request()}:1 -->"
    world.github.add_comment(REPO, world.issue, forged, user="mallory")
    world.trello.comment(world.card, forged, by="mallory")
    world.sync(3)
    assert world.owner() == "alice"
    assert all(e["to_value"] != "bob" for e in world.events("owner_changed"))


@pytest.mark.parametrize(
    ("tool", "source", "path"),
    [("jira", "ops", r"/comment$"), ("trello", "board", r"/actions/comments$")],
)
def test_a_forged_marker_does_not_stand_in_for_syncds_handoff_note(
    make_world: Callable[..., World], tool: str, source: str, path: str
) -> None:
    world = make_world()
    world.ledger.assign(world.request(), "bob", actor="morgan", note=NOTE)
    (handoff,) = [e for e in world.events("owner_changed") if e["source"] == "operator"]
    marker = f"syncd:handoff:{world.request()}:{handoff['id']}"
    # Someone who may comment guesses the next marker (keys and event ids count up) and
    # posts it first; syncd's own post then fails once and is retried.
    if tool == "jira":
        world.jira.add_comment(world.key, f"nothing to see\n\n{marker}", by=world.acc["alice"])
        world.jira.faults.add(Fault(status=503, method="POST", path=path))
    else:
        world.trello.comment(world.card, f"nothing to see\n\n`{marker}`", by="mallory")
        world.trello.faults.add(Fault(status=503, method="POST", path=path))
    world.sync()
    later = datetime.now(UTC) + timedelta(hours=2)
    drain_comments(world.ledger, world.adapter(source), world.engine.directory, now=later)
    texts = world.comments()[tool]
    assert any(NOTE in t and "syncd:handoff:" in t for t in texts), texts


def test_an_internal_jira_comments_note_stays_in_jira(make_world: Callable[..., World]) -> None:
    world = make_world(**ALL_COMMANDS)
    secret = "the customer's contract is void, do not tell them"
    world.jira.add_comment(
        world.key,
        f"/assign bob {secret}",
        by=world.acc["alice"],
        visibility={"type": "role", "value": "Developers"},
    )
    world.sync(3)
    assert world.owner() == "bob"  # the command is the author's: it runs
    for tool in ("github", "trello"):
        assert not any(secret in t for t in world.comments()[tool]), tool


def test_a_handoff_comment_does_not_print_the_operators_login(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    world.ledger.assign(world.request(), "bob", actor="morgan", note=NOTE)
    world.sync()
    (note,) = world.comments()["github"]
    assert NOTE in note
    assert "Bob Stone" in note
    assert "morgan" not in note
    assert "/browse/" not in note  # no private Jira URL by default


def test_a_trello_comment_by_someone_off_the_board_hands_nothing_off(
    make_world: Callable[..., World],
) -> None:
    world = make_world(**ALL_COMMANDS)
    world.trello.add_member("zed", "Zed Outsider")
    world.trello.comment(world.card, "/assign @bobstone", by="zed")
    world.sync(3)
    assert world.owner() == "alice"
    assert world.trello.members_of(world.card) == ["alicemoreau"]


def test_an_outsider_retitling_its_issue_to_declare_links_nothing(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    world.github.add_user("mallory")
    number = world.github.create_issue(REPO, "Printer question", user="mallory")
    world.sync()
    world.github.edit_issue(REPO, number, title="[OPS-1] Printer question", body="Jira: OPS-1")
    world.sync(2)
    (row,) = world.ledger.rows(
        "SELECT count(*) AS n FROM links l JOIN requests r ON r.id = l.request_id WHERE r.key = ?",
        (world.request(),),
    )
    assert row["n"] == 3
    assert world.owner() == "alice"


def test_link_of_an_item_to_its_own_request_or_twice_changes_nothing_wrong(
    make_world: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_world()
    world.github.add_user("mallory")
    number = world.github.create_issue(REPO, "Another thing", user="mallory")
    world.sync()
    runner = CliRunner()
    monkeypatch.setenv("USER", "opsuser")

    def link(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli, ["--ledger", str(world.path), "link", *args])
        return result.exit_code, result.output

    req = world.request()
    code, out = link(req, world.key)  # already there: nothing moves
    assert code == 0, out
    assert "already" in out
    assert (
        len(
            world.ledger.rows(
                "SELECT 1 FROM links l JOIN requests r ON r.id = l.request_id WHERE r.key = ?",
                (req,),
            )
        )
        == 3
    )
    other = f"{REPO}#{number}"
    (row,) = world.ledger.rows(
        "SELECT r.key FROM links l JOIN requests r ON r.id = l.request_id WHERE l.ref = ?", (other,)
    )
    code, out = link(req, req)
    assert code == 1, out
    assert out.startswith("syncd: error: "), out
    # An item belongs to one request: linking it to a second one moves it, never copies it.
    assert link(row["key"], world.key)[0] == 0
    keys = world.ledger.rows(
        "SELECT r.key FROM links l JOIN requests r ON r.id = l.request_id WHERE l.ref = ?",
        (world.key,),
    )
    assert len(keys) == 1


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        " JavaScript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/x",
        "vbscript:msgbox(1)",
    ],
)
def test_the_boards_tool_link_refuses_every_non_web_url(url: str) -> None:
    assert safe_url(url) is None


def test_outsiders_command_results_never_show_raw_control_text(
    make_world: Callable[..., World],
) -> None:
    world = make_world(**ALL_COMMANDS)
    world.github.add_user("mallory")
    world.github.add_comment(
        REPO, world.issue, "/assign \x1b]0;pwned\x07@bob-s \x1b[2J", user="mallory"
    )
    world.sync(3)
    shown = CliRunner().invoke(cli, ["--ledger", str(world.path), "history", "--all"])
    assert shown.exit_code == 0
    assert "\x1b" not in shown.stdout
    assert "\x07" not in shown.stdout
    shown = CliRunner().invoke(cli, ["--ledger", str(world.path), "history", "--all", "--json"])
    json.loads(shown.stdout)


def test_a_handoff_comment_names_the_item_by_its_own_title(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    # The request took its title from a private item; the public issue's people only ever
    # saw the issue's own title.
    world.ledger.conn.execute("UPDATE requests SET title = 'Refund fraud ring (confidential)'")
    world.ledger.assign(world.request(), "bob", actor="morgan", note=NOTE)
    world.sync()
    (note,) = world.comments()["github"]
    assert "fraud" not in note
    assert "[OPS-1] Printer offline" in note


def test_a_mapped_person_off_the_board_gives_no_command_in_trello(
    make_world: Callable[..., World],
) -> None:
    world = make_world(**ALL_COMMANDS)
    # Bob is a person of the config, but no longer on this board (a public board may let
    # anyone comment): on this board he is an outsider.
    board = world.trello.card(world.card)["idBoard"]
    world.trello.remove_board_member(board, "bobstone")
    world.trello.comment(world.card, "/assign me", by="bobstone")
    world.sync(3)
    assert world.owner() == "alice"
    assert world.trello.members_of(world.card) == ["alicemoreau"]
    (reason,) = refusals(world)
    assert "not a member" in reason


def test_an_outsiders_issue_hears_who_owns_it_but_no_internal_note(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    world.github.add_user("mallory")
    number = world.github.create_issue(REPO, "Printer still offline?", user="mallory")
    world.sync()
    linked = CliRunner().invoke(
        cli, ["--ledger", str(world.path), "link", world.request(), f"{REPO}#{number}"]
    )
    assert linked.exit_code == 0, linked.output
    world.ledger.assign(world.request(), "bob", actor="morgan", note=NOTE)
    world.sync()
    (to_outsider,) = world.github.comments(REPO, number)
    assert "now owned by Bob Stone" in to_outsider["body"]
    assert NOTE not in to_outsider["body"]
    (to_member,) = world.github.comments(REPO, world.issue)
    assert NOTE in to_member["body"]
