"""[[teams]], [[routing]], [acceptance] and [escalation] in the config, and what
`syncd config check` says about them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

from syncd.cli import cli
from syncd.config import load_config

PEOPLE = """
ledger = "ledger.db"
[[people]]
id = "alice"
[[people]]
id = "bob"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(PEOPLE + text)
    return path


def check_problems(path: Path) -> list[str]:
    result = CliRunner().invoke(cli, ["--config", str(path), "config", "check"])
    assert result.exit_code == (1 if "syncd: error" in result.stderr else 0)
    prefix = f"syncd: error: {path}: "
    return [ln.removeprefix(prefix) for ln in result.stderr.splitlines() if ln.startswith(prefix)]


def test_a_worked_routing_config_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[teams]]
id = "support"
members = ["alice", "bob"]
lead = "alice"
accept_within = "4h"

[[routing]]
name = "billing"
when = { labels = "billing", tool = ["github", "jira"], title = "(?i)refund", state = "open" }
assign = { team = "support", strategy = "least_loaded" }

[[routing]]
name = "customers"
when = { requester = "@example.com", unowned_for = "30m" }
assign = { person = "bob" }

[routing_options]
max_per_cycle = 5

[acceptance]
accept_within = "1d"

[escalation]
action = "reroute"
""",
    )
    config = load_config(path)
    assert config.team("support").members == ["alice", "bob"]
    assert config.team("support").accept_within == timedelta(hours=4)
    billing, customers = config.routing
    assert billing.when.labels == ["billing"]  # one string is a list of one
    assert billing.assign.strategy == "least_loaded"
    assert customers.when.unowned_for == timedelta(minutes=30)
    assert customers.assign.strategy == "round_robin"
    assert config.routing_options.max_per_cycle == 5
    assert config.acceptance.accept_within == timedelta(days=1)
    assert config.escalation is not None
    assert config.escalation.action == "reroute"
    assert check_problems(path) == []


def test_defaults_route_nothing_and_flag_nothing(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.routing == []
    assert config.teams == []
    assert config.routing_options.max_per_cycle == 20
    assert config.acceptance.accept_within is None
    assert config.escalation is None


def test_check_names_every_unknown_person_team_and_tool(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[teams]]
id = "support"
members = ["alice", "zed"]
lead = "carol"

[[routing]]
name = "billing"
when = { tool = "gitlab" }
assign = { team = "suport" }

[[routing]]
name = "vip"
assign = { person = "dan" }
""",
    )
    assert check_problems(path) == [
        "teams[0].members[1]: no person 'zed' in [[people]]",
        "teams[0].lead: no person 'carol' in [[people]]",
        "routing[0] (billing).assign.team: no team 'suport' in [[teams]]",
        "routing[0] (billing).when.tool[0]: 'gitlab' is not one of email, github, jira, trello",
        "routing[1] (vip).assign.person: no person 'dan' in [[people]]",
    ]


def test_check_refuses_a_pattern_that_does_not_compile_or_is_too_long(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[routing]]
name = "broken"
when = { title = "(unclosed" }
assign = { person = "alice" }

[[routing]]
name = "huge"
when = { title = "%s" }
assign = { person = "alice" }
"""
        % ("a" * 201),
    )
    found = check_problems(path)
    assert len(found) == 2
    assert found[0].startswith("routing[0] (broken).when.title: not a valid regular expression")
    assert found[1] == "routing[1] (huge).when.title: a title pattern is at most 200 characters"


def test_check_wants_exactly_one_assignee(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[teams]]
id = "support"
members = ["alice"]

[[routing]]
name = "both"
assign = { person = "alice", team = "support" }
""",
    )
    assert check_problems(path) == ["routing[0] (both).assign: set exactly one of person or team"]
