"""`syncd demo --story routing`: unowned work routed by rules, and a handoff nobody picked up.

Emulated GitHub and Jira on loopback, no credentials, the real daemon. The printer team
(Bob and Carol) takes printer issues in turn. Two unowned issues arrive in acme/api labelled
"printer"; the first is also tracked in Jira as OPS-7. syncd routes the first to Bob and the
second to Carol, and writes each owner back to every linked item (GitHub and Jira). Bob
comments in Jira, which accepts his handoff; Carol does nothing, so hers goes overdue (the
demo's accept_within is a few seconds) and is escalated once: a reminder naming Carol and the
rule is posted on the issue. The exit status is 0 only when the story reached that end state.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import click

from syncd.daemon import Daemon
from syncd.demo import explore, run_daemon, step, wait_for
from syncd.errors import LedgerError
from syncd.ledger import Ledger
from syncd.safetext import safe_text
from syncd.sandbox import jira as jira_emulator
from syncd.sandbox.github import GitHubEmulator
from syncd.sandbox.jira import JiraEmulator, adf, link, text

ENV = {"github": "SYNCD_DEMO_GITHUB_TOKEN", "jira": "SYNCD_DEMO_JIRA_TOKEN"}
PEOPLE = {  # id: (name, github login)
    "alice": ("Alice Moreau", "alice-m"),
    "bob": ("Bob Okafor", "bob-ok"),
    "carol": ("Carol Diaz", "carol-d"),
}
CONFIG = """\
ledger = "ledger.db"

[daemon]
jitter = "0s"

[[sources]]
name = "api"
type = "github"
repo = "acme/api"
base_url = "{github}"
token = {{ env = "{env[github]}" }}
interval = "1s"
write_spacing = 0

[[sources]]
name = "ops"
type = "jira"
base_url = "{jira}"
email = "{jira_email}"
token = {{ env = "{env[jira]}" }}
jql = "project = OPS"
interval = "1s"

[[teams]]
id = "printers"
members = ["bob", "carol"]

[[routing]]
name = "printer issues"
when = {{ labels = "printer" }}
assign = {{ team = "printers", strategy = "round_robin" }}

[acceptance]
accept_within = "4s"    # a day or so in life; seconds, so the demo does not wait

[escalation]
action = "comment"
"""
PERSON = """
[[people]]
id = "{id}"
name = "{name}"
handles = {{ github = "{login}", jira = "{account}" }}
"""


def _count(ledger: Path, sql: str) -> int:
    try:
        with Ledger(ledger, readonly=True) as led:
            return int(led.conn.execute(sql).fetchone()[0])
    except LedgerError:
        return 0


def _owner(gh: GitHubEmulator, number: int) -> str:
    names = {v[1]: k for k, v in PEOPLE.items()}
    assignees = [a["login"] for a in gh.issue("acme/api", number)["assignees"]]
    return names.get(assignees[0], assignees[0]) if assignees else "nobody"


def _reminders(gh: GitHubEmulator, number: int) -> list[str]:
    return [c["body"] for c in gh.comments("acme/api", number) if "Not picked up" in c["body"]]


def _story(
    gh: GitHubEmulator, jira: JiraEmulator, accounts: dict[str, str], daemon: Daemon, ledger: Path
) -> None:
    try:
        account = {v: k for k, v in accounts.items()}
        routed = wait_for(
            lambda: (
                _owner(gh, 1) == "bob"
                and _owner(gh, 2) == "carol"
                and account.get(jira.assignee("OPS-7") or "") == "bob"
            )
        )
        step(
            "syncd routed acme/api#1 to Bob (and wrote him to OPS-7 in Jira) and acme/api#2 to "
            "Carol, by the rule 'printer issues', taking the team in turn"
            if routed
            else f"not routed yet: #1 {_owner(gh, 1)}, #2 {_owner(gh, 2)}"
        )
        step("Bob comments on OPS-7 in Jira: that accepts his handoff; Carol does nothing")
        jira.add_comment("OPS-7", "Looking at the printer now.", by=accounts["bob"])
        wait_for(lambda: _count(ledger, "SELECT count(*) FROM events WHERE kind = 'accepted'") > 0)
        wait_for(lambda: len(_reminders(gh, 2)) == 1)
        time.sleep(1.5)  # a few more quiet cycles: nothing is routed or escalated again
    finally:
        daemon.stop.set()


def run_routing_demo(
    *, trace_http: Path | None = None, keep: bool = False, show: Callable[[list[str]], None]
) -> int:
    work = Path(tempfile.mkdtemp(prefix="syncd-demo-routing-"))
    run = f"{os.getpid()}-{time.time_ns()}"
    secrets = {"github": f"demo-gh-{run}", "jira": f"demo-jira-{run}"}
    stack = contextlib.ExitStack()
    stack.callback(_clean_up, work, keep)
    try:
        gh, jira = GitHubEmulator(token=secrets["github"]), JiraEmulator(token=secrets["jira"])
        for name, value in secrets.items():
            os.environ[ENV[name]] = value
        for emulator in (gh, jira):
            emulator.start()
            stack.callback(emulator.stop)
        step(f"emulated GitHub {gh.base_url} and Jira {jira.base_url}")
        accounts = {pid: jira.add_user(v[0]) for pid, v in PEOPLE.items()}
        gh.add_repo("acme/api", collaborators=[v[1] for v in PEOPLE.values()])
        gh.create_issue("acme/api", "Label printer jams", labels=["printer"], user="support-desk")
        gh.create_issue(
            "acme/api", "Receipt printer offline", labels=["printer"], user="support-desk"
        )
        jira.add_project("OPS", "Operations", next_number=7)
        jira.create_issue(
            "OPS",
            "Warehouse label printer",
            adf(
                # One line: "Tracked in" declares the issue it is followed by.
                [text("Tracked in "), link("acme/api#1", "https://github.com/acme/api/issues/1")]
            ),
        )
        step("seeded acme/api#1 and #2, labelled printer, nobody on them; OPS-7 tracks #1")
        config = CONFIG.format(
            github=gh.base_url, jira=jira.base_url, jira_email=jira_emulator.DEFAULT_EMAIL, env=ENV
        )
        for pid, (name, login) in PEOPLE.items():
            config += PERSON.format(id=pid, name=name, login=login, account=accounts[pid])
        config_path = work / "syncd.toml"
        config_path.write_text(config)
        step("the rules: printer issues go to the printers team (Bob, Carol) in turn")
        ledger = work / "ledger.db"
        code = run_daemon(
            config_path, trace_http, lambda daemon: _story(gh, jira, accounts, daemon, ledger)
        )
        step("handoffs nobody accepted in time")
        show(["--ledger", str(ledger), "ls", "--unaccepted"])
        step("the handoff log")
        show(["--ledger", str(ledger), "history"])
        step("REQ-1's timeline: Bob's comment in Jira accepted the handoff")
        show(["--ledger", str(ledger), "show", "REQ-1"])
        reminders = _reminders(gh, 2)
        if reminders:
            step("the reminder syncd posted on acme/api#2:")
            show_text(reminders[0])
        wrong = _problems(gh, ledger)
        for problem in wrong:
            step(f"the story did not end as it should: {problem}")
        return 1 if wrong else code
    finally:
        stack.close()


def show_text(body: str) -> None:
    for line in body.splitlines():
        if line.strip() and not line.startswith("<!--"):
            click.echo(safe_text(f"  {line}"))


def _problems(gh: GitHubEmulator, ledger: Path) -> list[str]:
    found = []
    if (_owner(gh, 1), _owner(gh, 2)) != ("bob", "carol"):
        found.append(f"owners are #1 {_owner(gh, 1)}, #2 {_owner(gh, 2)}, not Bob and Carol")
    accepted = _count(ledger, "SELECT count(*) FROM events WHERE kind = 'accepted'")
    escalated = _count(ledger, "SELECT count(*) FROM events WHERE kind = 'escalated'")
    if (accepted, escalated) != (1, 1):
        found.append(f"{accepted} handoffs accepted and {escalated} escalated, expected 1 and 1")
    if len(_reminders(gh, 2)) != 1:
        found.append(f"{len(_reminders(gh, 2))} reminders on acme/api#2, expected 1")
    return found


EXPLORE_ROUTING = (
    "ls --all",
    "ls --unaccepted",
    "route --dry-run",
    "show REQ-2",
    "history --all",
    "people --team printers",
    "status",
)


def _clean_up(work: Path, keep: bool) -> None:
    for name in ENV.values():
        os.environ.pop(name, None)
    if keep:
        # Teams, rules and accept_within are in the config: these commands name it.
        config = "--config " + shlex.quote(str(work / "syncd.toml"))
        explore(work, [f"{config} {args}" for args in EXPLORE_ROUTING])
    else:
        shutil.rmtree(work, ignore_errors=True)
