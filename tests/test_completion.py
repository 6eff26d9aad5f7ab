"""Shell completion as bash, zsh and fish ask for it (click's protocol, through the installed
script): request ids, people, sources and teams from the ledger and the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.syncdproc import syncd
from tests.test_cli import Story, story

__all__ = ["story"]


def complete(shell: str, words: str, env: dict[str, str] | None = None) -> list[str]:
    """The values offered for the last (possibly empty) word of `words`."""
    split = words.split(" ")
    extra = {"_SYNCD_COMPLETE": f"{shell}_complete", "COMP_WORDS": words}
    # bash and zsh give the index of the word being completed; fish gives the word itself.
    extra["COMP_CWORD"] = split[-1] if shell == "fish" else str(len(split) - 1)
    result = syncd(env={**extra, **(env or {})})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    if shell == "bash":
        return [line.split(",", 1)[1] for line in lines]
    if shell == "zsh":  # type, value, help, repeated
        return [lines[i + 1] for i in range(0, len(lines), 3)]
    return [line.split("\t")[0].split(",", 1)[1] for line in lines]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_request_ids_people_and_sources(shell: str, story: Story, tmp_path: Path) -> None:
    ledger = story.path
    assert complete(shell, f"syncd --ledger {ledger} show ") == ["REQ-3", "REQ-2", "REQ-1"]
    assert complete(shell, f"syncd show --ledger {ledger} REQ-") == ["REQ-3", "REQ-2", "REQ-1"]
    assert complete(shell, f"syncd --ledger {ledger} assign REQ-1 ") == [
        "alice",
        "bob",
        "carol",
        "me",
    ]
    assert complete(shell, f"syncd --ledger {ledger} ls --owner b") == ["bob"]
    config = tmp_path / "syncd.toml"
    config.write_text(
        f'ledger = "{ledger}"\n'
        '[[sources]]\nname = "api"\ntype = "github"\nrepo = "acme/api"\n'
        'token = { env = "NOT_NEEDED_TO_COMPLETE" }\n'
        '[[sources]]\nname = "ops"\ntype = "jira"\nbase_url = "https://acme.atlassian.net"\n'
        'email = "syncd@acme.example"\ntoken = { env = "NOT_NEEDED_TO_COMPLETE" }\n'
    )
    assert complete(shell, f"syncd --config {config} ls --source ") == ["api", "ops"]
    # From $SYNCD_CONFIG too, as operators have it set.
    assert complete(shell, "syncd ls --source o", env={"SYNCD_CONFIG": str(config)}) == ["ops"]


def test_nothing_to_read_completes_nothing_quietly(tmp_path: Path) -> None:
    result = syncd(
        env={
            "_SYNCD_COMPLETE": "bash_complete",
            "COMP_WORDS": f"syncd --ledger {tmp_path}/none.db show ",
            "COMP_CWORD": "4",
        }
    )
    assert result.returncode == 0
    assert result.stdout.strip() == ""
    assert result.stderr == ""


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_documented_setup_line_prints_a_script(shell: str) -> None:
    result = syncd(env={"_SYNCD_COMPLETE": f"{shell}_source"})
    assert result.returncode == 0
    assert "_SYNCD_COMPLETE" in result.stdout
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert f"_SYNCD_COMPLETE={shell}_source syncd" in readme


def test_teams_from_the_config(story: Story, tmp_path: Path) -> None:
    config = tmp_path / "syncd.toml"
    config.write_text(
        f'ledger = "{story.path}"\n'
        '[[people]]\nid = "alice"\n[[people]]\nid = "bob"\n'
        '[[teams]]\nid = "support"\nmembers = ["alice"]\n'
        '[[teams]]\nid = "sre"\nmembers = ["bob"]\n'
    )
    assert complete("bash", f"syncd --config {config} ls --team ") == ["support", "sre"]
    assert complete("fish", f"syncd --config {config} people --team s") == ["support", "sre"]
