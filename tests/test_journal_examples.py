"""The README's journal examples, run as written on what syncd really logs, with the
non-JSON lines a unit's journal also holds (systemd's own messages)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from syncd.sandbox.github import DEFAULT_TOKEN, GitHubEmulator
from tests.syncdproc import syncd

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD_LINES = [
    "Starting syncd.service - syncd: one ledger of who owns each request...",
    "Started syncd.service - syncd: one ledger of who owns each request.",
]


def readme_jq_programs() -> list[tuple[str, list[str]]]:
    """(the whole line, jq's argv) for each `journalctl ... | jq ...` line of the README."""
    out = []
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("journalctl ") and "| jq " in line:
            jq = line.split("| jq ", 1)[1]
            m = re.fullmatch(r"(-\w+) '(.*)'", jq)
            assert m, line
            out.append((line, ["jq", m.group(1), m.group(2)]))
    return out


@pytest.mark.skipif(shutil.which("jq") is None, reason="needs jq, as the service guide installs")
def test_journal_examples_work_on_a_real_log(
    tmp_path: Path, github_emulator: GitHubEmulator
) -> None:
    github_emulator.add_repo("acme/api", collaborators=["alice-m"])
    github_emulator.create_issue("acme/api", "Checkout fails", "", assignees=["alice-m"])
    config = tmp_path / "syncd.toml"
    config.write_text(
        'ledger = "ledger.db"\n'
        + "".join(
            f'[[sources]]\nname = "{name}"\ntype = "github"\nrepo = "acme/{name}"\n'
            f'base_url = "{github_emulator.base_url}"\ntoken = {{ env = "SYNCD_TEST_TOKEN" }}\n'
            for name in ("api", "gone")  # acme/gone does not exist: a failed poll
        )
    )
    run = syncd("--config", config, "sync", "--once", env={"SYNCD_TEST_TOKEN": DEFAULT_TOKEN})
    assert run.returncode == 1  # one source failed
    journal = "\n".join([*SYSTEMD_LINES, *run.stderr.splitlines(), "Stopped syncd.service."])
    # The plain form fails on systemd's own lines: that is why the README uses -R fromjson?.
    plain = subprocess.run(
        ["jq", "-c", "."], input=journal, capture_output=True, text=True, check=False
    )
    assert plain.returncode != 0
    programs = readme_jq_programs()
    assert len(programs) >= 3
    outputs = {}
    for line, argv in programs:
        result = subprocess.run(argv, input=journal, capture_output=True, text=True, check=False)
        assert result.returncode == 0, (line, result.stderr)
        outputs[argv[2]] = result.stdout
    not_info, failed, follow = (outputs[argv[2]] for _, argv in programs[:3])
    assert not_info.strip(), "the failed poll is not routine"
    (failed_line,) = failed.splitlines()
    assert failed_line.split("\t")[1] == "gone"
    assert re.search(r"^\S+ api ok=true items=1 changed=", follow, re.MULTILINE), follow
    assert re.search(r"^\S+ gone ok=false ", follow, re.MULTILINE), follow
