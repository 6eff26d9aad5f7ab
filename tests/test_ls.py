"""`syncd ls` as operators use it: open work by default, filters in any case, sorting,
limits, machine formats, and tables that fit the terminal. Through the installed script,
on the ledger of tests.test_cli's story (REQ-1 in progress, owned by bob, a write-back
dead-lettered; REQ-2 github:zed; REQ-3 blocked, unowned; REQ-4 done, bob's)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from syncd import routing_ledger as handoffs
from syncd.acceptance import Pending
from syncd.ledger import Ledger
from tests.syncdproc import errors, syncd, syncd_on_terminal
from tests.test_cli import Story, apply, observe, story, write_config

__all__ = ["story"]


def keys(story: Story, *args: str) -> list[str]:
    result = syncd("--ledger", story.path, "ls", "--json", *args)
    assert result.returncode == 0, result.stderr
    return [r["key"] for r in json.loads(result.stdout)]


def test_open_work_by_default_and_all_with_all(story: Story) -> None:
    assert keys(story) == ["REQ-1", "REQ-2", "REQ-3"]
    assert keys(story, "--all") == ["REQ-1", "REQ-2", "REQ-3", "REQ-4"]


def test_unowned_and_stale_agree_with_status(story: Story) -> None:
    # A cancelled, unowned request: not open work, so neither ls nor status counts it.
    with Ledger(story.path) as ledger:
        apply(
            ledger, observe("web", "acme/web#2", "Won't fix", (), story.now, "cancelled"), story.now
        )
    status = json.loads(syncd("--ledger", story.path, "status", "--json").stdout)
    assert keys(story, "--unowned") == ["REQ-3"]
    assert status["totals"]["unowned_open"] == len(keys(story, "--unowned"))
    assert keys(story, "--unowned", "--all") == ["REQ-3", "REQ-5"]
    # Done work is not stale.
    assert "REQ-4" not in keys(story, "--stale", "1s")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--owner", "BOB"], ["REQ-1"]),
        (["--owner", "Bob-OK"], ["REQ-1"]),  # a configured handle, in any case
        (["--owner", "GitHub:Zed"], ["REQ-2"]),
        (["--source", "API"], ["REQ-1", "REQ-2"]),
        (["--state", "BLOCKED"], ["REQ-3"]),
    ],
)
def test_filters_ignore_case(story: Story, args: list[str], expected: list[str]) -> None:
    assert keys(story, *args) == expected


def test_an_unknown_owner_or_source_is_an_error(story: Story, tmp_path: Path) -> None:
    result = syncd("--ledger", story.path, "ls", "--owner", "nobody")
    assert result.returncode == 1
    assert errors(result) == [
        "no person 'nobody' in the ledger (people come from [[people]] in the config once the "
        "daemon has run; see `syncd people`)"
    ]
    result = syncd("--ledger", story.path, "ls", "--source", "apii")
    assert result.returncode == 1
    assert errors(result) == ["no source 'apii' (known: api, ops, web)"]
    # With a config, its sources are the ones that count.
    config = write_config(tmp_path / "syncd.toml", story.path, ("api", "1m"))
    result = syncd("--config", config, "ls", "--source", "ops")
    assert errors(result) == ["no source 'ops' (known: api)"]


def test_sort_and_limit(story: Story) -> None:
    # The oldest activity first; ties (REQ-2 and REQ-3) stay in id order either way.
    assert keys(story, "--all", "--sort", "activity") == ["REQ-4", "REQ-2", "REQ-3", "REQ-1"]
    assert keys(story, "--all", "--sort", "-activity") == ["REQ-1", "REQ-2", "REQ-3", "REQ-4"]
    assert keys(story, "--all", "--sort", "owner") == ["REQ-1", "REQ-4", "REQ-2", "REQ-3"]
    assert keys(story, "--all", "--sort", "-id", "--limit", "2") == ["REQ-4", "REQ-3"]
    result = syncd("--ledger", story.path, "ls", "--all", "--limit", "3")
    assert result.stdout.splitlines()[-1] == (
        "… 1 more (4 in all); --limit 0 shows every row, or narrow the filters"
    )
    bad = syncd("--ledger", story.path, "ls", "--sort", "colour")
    assert bad.returncode == 2
    assert "sort by one of id, state, owner" in bad.stderr


def test_csv_tsv_and_no_headers(story: Story) -> None:
    result = syncd("--ledger", story.path, "ls", "--all", "--format", "csv")
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0][:3] == ["key", "state", "owner"]
    assert [r[0] for r in rows[1:]] == ["REQ-1", "REQ-2", "REQ-3", "REQ-4"]
    assert rows[1][4] == "api;ops"
    tsv = syncd("--ledger", story.path, "ls", "--format", "tsv", "--no-headers").stdout
    assert [line.split("\t")[0] for line in tsv.splitlines()] == ["REQ-1", "REQ-2", "REQ-3"]
    table = syncd("--ledger", story.path, "ls", "--no-headers").stdout
    assert [line.split()[0] for line in table.splitlines()] == ["REQ-1", "REQ-2", "REQ-3"]


def test_a_terminal_gets_a_fitted_coloured_table_with_a_limit(story: Story) -> None:
    long_title = "A very long title that goes on " * 5
    with Ledger(story.path) as ledger:
        for n in range(60):
            apply(
                ledger, observe("web", f"acme/web#{100 + n}", long_title, (), story.now), story.now
            )
    code, out = syncd_on_terminal("--ledger", story.path, "ls", columns=60)
    assert code == 0
    lines = out.splitlines()
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines]
    assert max(len(line) for line in plain) <= 60
    assert plain[-1].startswith("… 13 more (63 in all)")  # 50 rows on a terminal by default
    assert len(plain) == 1 + 50 + 1
    # REQ-1 has a dead-lettered write-back: red; the header is not coloured.
    req1 = next(line for line in lines if "REQ-1 " in line)
    assert req1.startswith("\x1b[31")
    assert not lines[0].startswith("\x1b")


def test_an_overdue_handoff_is_yellow(story: Story) -> None:
    # REQ-2 handed to github:zed and not accepted in time, as the daemon records it.
    with Ledger(story.path) as ledger, ledger.transaction() as c:
        event = c.execute("SELECT max(id) FROM events WHERE request_id = 2").fetchone()[0]
        pending = Pending(2, "REQ-2", "github:zed", None, story.now - timedelta(days=3))
        handoffs.set_pending(c, 2, pending, event)
        handoffs.mark_overdue(c, 2, story.now)
    code, out = syncd_on_terminal("--ledger", story.path, "ls")
    assert code == 0
    lines = {line.split()[0].split("m")[-1]: line for line in out.splitlines() if "REQ-" in line}
    assert lines["REQ-2"].startswith("\x1b[33")  # yellow
    assert not lines["REQ-3"].startswith("\x1b")


def test_no_color_turns_colour_off(story: Story) -> None:
    code, out = syncd_on_terminal("--ledger", story.path, "ls", env={"NO_COLOR": "1"})
    assert code == 0
    assert "\x1b[" not in out
    assert "REQ-1" in out


def test_a_pipe_gets_every_row_uncut(story: Story) -> None:
    with Ledger(story.path) as ledger:
        for n in range(60):
            apply(ledger, observe("web", f"acme/web#{100 + n}", "t", (), story.now), story.now)
    out = syncd("--ledger", story.path, "ls").stdout
    assert len(out.splitlines()) == 1 + 63
    assert "\x1b[" not in out


def test_status_fits_the_terminal_and_marks_failing_sources(story: Story) -> None:
    code, out = syncd_on_terminal("--ledger", story.path, "status", columns=80)
    assert code == 0
    lines = out.splitlines()
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines]
    assert max(len(line) for line in plain) <= 80
    # No daemon has held this ledger: said first, in red.
    assert plain[0] == "daemon: not running (no daemon has held this ledger)"
    assert lines[0].startswith("\x1b[31")
    ops = next(line for line in lines if "ops (jira)" in line)
    assert ops.startswith("\x1b[31")  # failing
    code, out = syncd_on_terminal(
        "--ledger", story.path, "status", columns=50, env={"NO_COLOR": "1"}
    )
    assert "\x1b[" not in out
    assert max(len(line) for line in out.splitlines()) <= 50


def test_quarantine_refuses_an_unknown_source_as_ls_does(story: Story) -> None:
    result = syncd("--ledger", story.path, "quarantine", "--source", "apii")
    assert result.returncode == 1
    assert errors(result) == ["no source 'apii' (known: api, ops, web)"]
    result = syncd("--ledger", story.path, "quarantine", "--source", "API")
    assert (result.returncode, result.stdout) == (0, "no items in quarantine\n")
