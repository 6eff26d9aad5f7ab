"""The configuration file, and `syncd config check`, which an admin runs before starting."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from syncd.cli import cli
from syncd.config import default_ledger_path, load_config
from syncd.errors import ConfigError
from syncd.ledger import Ledger
from tests.syncdproc import SYNCD, errors, syncd

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "syncd.example.toml"
SECRET = "ghp_n0tReallyAT0kenButL0ngEnough42"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SYNCD_CONFIG", "GITHUB_TOKEN", "STATE_DIRECTORY", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)


def check(config: Path, *extra: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(
        cli, [*extra, "--config", str(config), "config", "check"], env=env, catch_exceptions=False
    )


def problems(result: Result) -> list[str]:
    """The field paths named by each "syncd: error: FILE: PATH: message" line."""
    # With --debug a traceback comes first; the problems are the "syncd: error:" lines.
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("syncd: error: ")]
    return [line.split(": ")[3] for line in lines]


# -- the example config --------------------------------------------------------------------


def test_the_example_config_passes_check_when_the_token_is_set() -> None:
    result = check(EXAMPLE, env={"GITHUB_TOKEN": SECRET})
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok: 1 source, 2 people, ledger /var/lib/syncd/ledger.db\n"
    assert SECRET not in result.output


def test_the_example_config_says_which_secret_is_missing() -> None:
    result = check(EXAMPLE)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"syncd: error: {EXAMPLE}: sources[0] (api).token: "
        "environment variable GITHUB_TOKEN is not set or empty"
    ]


def test_the_example_config_covers_what_admins_set() -> None:
    config = load_config(EXAMPLE, resolve=False)
    source = config.source("api")
    assert source.type == "github"
    assert source.states  # the [sources.states] overrides are shown
    assert {"github", "jira", "trello", "email"} <= set(config.people[0].handles)
    text = EXAMPLE.read_text()
    for documented in ("jitter", "hang_after", "max_write_attempts", "per_page", "write_spacing"):
        assert f"\n{documented} = " in text, documented
    # The file and credential ways of giving a token are documented next to the env one.
    assert '{ file = "' in text
    assert '{ credential = "' in text


def test_check_reports_the_ledger_given_on_the_command_line() -> None:
    result = check(EXAMPLE, "--ledger", "/srv/syncd/ledger.db", env={"GITHUB_TOKEN": SECRET})
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("ledger /srv/syncd/ledger.db\n")


# -- bad configs ---------------------------------------------------------------------------

BAD = """\
ledger = "ledger.db"

[daemon]
jitter = "soon"
max_write_attempts = 0

[[sources]]
name = "API"
type = "github"
repo = "not-a-repo"
token = "inline-secret-value"

[[sources]]
name = "ops"
type = "jira2"

[[sources]]
name = "web"
type = "github"
repo = "acme/web"
token = { env = "SYNCD_TEST_SECRET", file = "/etc/syncd/web-token" }

[[people]]
id = "Alice:x"
"""


def test_check_lists_every_problem_on_its_own_line_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "syncd.toml"
    config.write_text(BAD)
    result = check(config, env={"SYNCD_TEST_SECRET": SECRET})
    assert result.exit_code == 1
    assert result.stdout == ""
    assert problems(result) == [
        "sources[0] (API).name",
        "sources[0] (API).repo",
        "sources[0] (API).token",
        "sources[1] (ops).type",
        "sources[2] (web).token",
        "daemon.jitter",
        "daemon.max_write_attempts",
        "people[0].id",
    ]
    assert all(str(config) in line for line in result.stderr.splitlines())
    assert "unknown source type 'jira2'" in result.stderr
    assert "secrets are not read inline" in result.stderr
    # Neither a secret from the environment nor one typed inline is ever echoed back.
    assert SECRET not in result.output
    assert "inline-secret-value" not in result.output


def test_a_secret_read_during_check_never_appears_even_with_debug(tmp_path: Path) -> None:
    config = tmp_path / "syncd.toml"
    config.write_text(
        'ledger = "ledger.db"\n[[sources]]\nname = "api"\ntype = "github"\n'
        'repo = "acme/api"\ntoken = { env = "SYNCD_TEST_SECRET" }\n'
        '[[sources]]\nname = "api"\ntype = "github"\nrepo = "acme/web"\n'
        'token = { env = "SYNCD_TEST_SECRET" }\n'
    )
    result = check(config, "--debug", env={"SYNCD_TEST_SECRET": SECRET})
    assert result.exit_code == 1
    assert problems(result) == ["sources[1] (api).name"]
    assert "duplicate source name 'api'" in result.stderr
    assert SECRET not in result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ledger = \n", "not valid TOML"),
        ("[[sources]]\nname = 'x'\n", "sources[0] (x).type: field required"),
        ("colour = 'blue'\n", "colour: Extra inputs are not permitted"),
    ],
)
def test_check_explains_unusable_files(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "syncd.toml"
    config.write_text(text)
    result = check(config)
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"syncd: error: {config}: ")
    assert message in line


def test_check_of_a_missing_file(tmp_path: Path) -> None:
    result = check(tmp_path / "nope.toml")
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert "file not found" in line


def test_the_config_path_comes_from_the_environment(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["config", "check"],
        env={"SYNCD_CONFIG": str(tmp_path / "from-env.toml")},
        catch_exceptions=False,
    )
    assert result.exit_code == 1
    assert str(tmp_path / "from-env.toml") in result.stderr


# -- where secrets and the ledger come from --------------------------------------------------


def github_source(token: str) -> str:
    return f'[[sources]]\nname = "api"\ntype = "github"\nrepo = "acme/api"\ntoken = {token}\n'


def test_secrets_from_a_file_and_a_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(SECRET + "\n")
    config = tmp_path / "file.toml"
    config.write_text(github_source(f'{{ file = "{token_file}" }}'))
    assert load_config(config).sources[0].secret("token") == SECRET

    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "github-token").write_text("cred-" + SECRET)
    config = tmp_path / "cred.toml"
    config.write_text(github_source('{ credential = "github-token" }'))
    with pytest.raises(ConfigError, match=r"needs \$CREDENTIALS_DIRECTORY"):
        load_config(config)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert load_config(config).sources[0].secret("token") == "cred-" + SECRET


def test_reading_without_resolving_needs_no_secret(tmp_path: Path) -> None:
    config = tmp_path / "syncd.toml"
    config.write_text(github_source('{ env = "GITHUB_TOKEN" }'))
    with pytest.raises(ConfigError, match="GITHUB_TOKEN is not set"):
        load_config(config)
    assert load_config(config, resolve=False).sources[0].name == "api"


def test_a_relative_ledger_is_relative_to_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "syncd.toml"
    config.parent.mkdir()
    config.write_text('ledger = "data/ledger.db"\n')
    assert load_config(config).ledger == tmp_path / "etc" / "data" / "ledger.db"


def test_the_default_ledger_follows_systemds_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert default_ledger_path() == "/var/lib/syncd/ledger.db"
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/state:/var/lib/other")
    assert default_ledger_path() == f"{tmp_path}/state/ledger.db"
    config = tmp_path / "syncd.toml"
    config.write_text("[daemon]\n")
    assert load_config(config).ledger == tmp_path / "state" / "ledger.db"


# -- what a new admin trips over, through the installed script ---------------------------------


def test_a_misspelled_tool_in_handles_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "syncd.toml"
    config.write_text(
        '[[people]]\nid = "bob"\nhandles = { githb = "bobby", unix = "bob", jira = "acc-bob" }\n'
    )
    result = syncd("--config", config, "config", "check")
    assert result.returncode == 1
    assert errors(result) == [
        f"{config}: people[0].handles: unknown tool 'githb' "
        "(known: email, github, jira, trello, unix)"
    ]


def test_an_empty_config_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "syncd.toml"
    config.write_text("# nothing yet\n")
    result = syncd("--config", config, "config", "check")
    assert result.returncode == 1
    assert errors(result) == [
        f"{config}: the file is empty; `syncd config example` prints an annotated config to "
        "start from"
    ]


def test_every_unreadable_secret_is_named_by_its_field(tmp_path: Path) -> None:
    config = tmp_path / "syncd.toml"
    config.write_text(
        '[[sources]]\nname = "cards"\ntype = "trello"\nboards = ["0123456789abcdef01234567"]\n'
        'key = { env = "SYNCD_TEST_NO_KEY" }\ntoken = { file = "/nonexistent/trello-token" }\n'
    )
    result = syncd("--config", config, "config", "check")
    assert result.returncode == 1
    assert errors(result) == [
        f"{config}: sources[0] (cards).key: environment variable SYNCD_TEST_NO_KEY is not set "
        "or empty",
        f"{config}: sources[0] (cards).token: cannot read secret file "
        "/nonexistent/trello-token: No such file or directory",
    ]


def test_a_directory_as_config_is_an_error_not_a_usage_error(tmp_path: Path) -> None:
    for args in (
        ["--config", tmp_path, "config", "check"],
        ["config", "check", "--config", tmp_path],
    ):
        result = syncd(*args)
        assert result.returncode == 1
        assert errors(result) == [f"{tmp_path}: is a directory; name the config file itself"]


AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run syncd as a user outside the group",
)
def test_a_user_outside_the_group_is_told_what_to_do(tmp_path: Path) -> None:
    # The service guide's layout: config 0640 and state directory 2770, group-only.
    base = Path(tempfile.mkdtemp(prefix="syncd-perm-"))
    try:
        base.chmod(0o755)
        (base / "etc").mkdir(mode=0o755)
        state = base / "state"
        state.mkdir()
        state.chmod(0o2770)
        config = base / "etc" / "syncd.toml"
        config.write_text(f'ledger = "{state}/ledger.db"\n')
        config.chmod(0o640)
        with Ledger(state / "ledger.db"):
            pass
        hint = (
            "permission denied (operators need to be in the {what}'s group, syncd-operators "
            "in the service guide, and to log in again after being added)"
        )
        for args, line in (
            (["--config", config, "status"], f"{config}: cannot read: " + hint.format(what="file")),
            (
                ["--ledger", state / "ledger.db", "ls"],
                f"cannot read {state}/ledger.db: " + hint.format(what="ledger"),
            ),
        ):
            result = subprocess.run(
                [*AS_NOBODY, str(SYNCD), *map(str, args)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                cwd="/",
            )
            assert result.returncode == 1, result.stderr
            assert result.stderr == f"syncd: error: {line}\n"
        # The README quotes what a non-member gets with the service guide's paths.
        readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
        quoted = f"syncd: error: /etc/syncd/syncd.toml: cannot read: {hint.format(what='file')}"
        assert quoted in readme
    finally:
        shutil.rmtree(base)


def test_debug_works_after_the_command_too(tmp_path: Path) -> None:
    for args in (["--debug", "ls"], ["ls", "--debug"]):
        result = syncd("--ledger", tmp_path / "none.db", *args)
        assert result.returncode == 1
        assert "Traceback (most recent call last)" in result.stderr, args
        assert result.stderr.splitlines()[-1].startswith("syncd: error: no ledger at ")
    quiet = syncd("--ledger", tmp_path / "none.db", "ls")
    assert "Traceback" not in quiet.stderr


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run syncd as another user than the daemon's",
)
def test_reload_of_another_users_daemon_says_what_to_run(tmp_path: Path) -> None:
    # A process of root's, standing in for the daemon that runs as the service user.
    other = subprocess.Popen(["sleep", "60"])
    try:
        result = subprocess.run(
            [
                *AS_NOBODY,
                str(SYNCD),
                "--ledger",
                "/nonexistent/ledger.db",
                "reload",
                "--pid",
                str(other.pid),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd="/",
        )
        assert result.returncode == 1
        assert result.stderr == (
            f"syncd: error: not allowed to signal the daemon (pid {other.pid} runs as another "
            "user); use `sudo systemctl reload syncd` (or syncd@NAME)\n"
        )
        assert other.poll() is None  # not signalled
    finally:
        other.kill()
        other.wait()
