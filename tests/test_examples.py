"""The example configs a new admin starts from, and the README's config samples: each one
passes `syncd config check` as printed, once its secrets exist."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.syncdproc import syncd

ROOT = Path(__file__).resolve().parent.parent
TYPES = ["github", "jira", "trello", "email"]


def secrets_for(text: str, creds: Path) -> dict[str, str]:
    """An environment giving every { env = ... } and { credential = ... } in `text` a value."""
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    creds.mkdir(exist_ok=True)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if set(node) == {"env"}:
                env[node["env"]] = "example-secret"
            elif set(node) == {"credential"}:
                (creds / node["credential"]).write_text("example-secret\n")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tomllib.loads(text))
    return env


@pytest.mark.parametrize("kind", TYPES)
def test_each_printed_example_passes_check(kind: str, tmp_path: Path) -> None:
    printed = syncd("config", "example", "--type", kind)
    assert printed.returncode == 0, printed.stderr
    config = tmp_path / "syncd.toml"
    config.write_text(printed.stdout)
    assert f'type = "{kind}"' in printed.stdout
    result = syncd(
        "--config", config, "config", "check", env=secrets_for(printed.stdout, tmp_path / "c")
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 1 source, 2 people")
    # Without its secrets it names each one by field.
    bare = syncd("--config", config, "config", "check")
    assert bare.returncode == 1
    assert "sources[0] (" in bare.stderr


def test_the_default_example_is_the_github_one_and_matches_the_source_tree() -> None:
    printed = syncd("config", "example").stdout
    assert printed == (ROOT / "config" / "syncd.example.toml").read_text()
    for kind in ("jira", "trello", "email"):
        assert (
            syncd("config", "example", "--type", kind).stdout
            == (ROOT / "config" / f"{kind}.example.toml").read_text()
        )


def readme_toml_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^```toml\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_the_readme_has_config_samples() -> None:
    assert readme_toml_blocks()


@pytest.mark.parametrize("n", range(len(readme_toml_blocks())))
def test_each_readme_config_sample_passes_check(n: int, tmp_path: Path) -> None:
    block = readme_toml_blocks()[n]
    config = tmp_path / "syncd.toml"
    config.write_text(block)
    result = syncd("--config", config, "config", "check", env=secrets_for(block, tmp_path / "c"))
    assert result.returncode == 0, f"README sample {n + 1}:\n{block}\n{result.stderr}"


def test_help_points_to_the_example_command_not_a_source_file() -> None:
    for args in (["--help"], ["config", "--help"], ["config", "check", "--help"]):
        text = syncd(*args).stdout
        assert "config/syncd.example.toml" not in text
    assert "syncd config example" in " ".join(syncd("config", "example", "--help").stdout.split())


@pytest.mark.slow
def test_a_built_wheel_carries_the_examples_and_schemas(tmp_path: Path) -> None:
    # What pip and pipx install: the examples and the JSON Schemas are package data. Built
    # from a copy, so that setuptools' build/ directory does not land in the source tree.
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "bench-results*"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(src),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("syncd-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind in ("syncd", "jira", "trello", "email"):
        assert f"syncd/examples/{kind}.example.toml" in names
    assert "syncd/schemas/ls.json" in names
    assert "syncd/schemas/status.json" in names
