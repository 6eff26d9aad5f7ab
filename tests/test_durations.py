"""Durations as users type them: in the config and after --stale / --since."""

from __future__ import annotations

from datetime import timedelta

import pytest

from syncd.durations import parse_duration
from tests.syncdproc import errors, syncd


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90", timedelta(seconds=90)),
        (90, timedelta(seconds=90)),
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("3d", timedelta(days=3)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        ("1.5h", timedelta(minutes=90)),
        (" 2H ", timedelta(hours=2)),
    ],
)
def test_units_and_ordered_combinations(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2h1h", "'h' appears twice"),
        ("30m1h", "'h' comes after 'm'"),
        ("5y", "unknown unit 'y'"),
        ("h", "is not a duration"),
        ("1h30", "is not a duration"),
        ("", "is not a duration"),
        ("99999999999d", "too long"),
        (float("inf"), "is not a duration"),
        (-5, "cannot be negative"),
    ],
)
def test_repeats_disorder_and_overflow_are_refused(text: str | float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


@pytest.mark.parametrize("value", ["99999999999d", "2h1h", "3x"])
def test_a_bad_duration_on_the_command_line_is_a_usage_error(tmp_path: str, value: str) -> None:
    # Not an internal error (exit 70): a clear message naming the option, exit 2.
    result = syncd("--ledger", f"{tmp_path}/ledger.db", "ls", "--stale", value)
    assert result.returncode == 2, result.stderr
    assert "Invalid value for '--stale'" in result.stderr
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr


def test_a_bad_duration_in_the_config_names_the_field(tmp_path: str) -> None:
    config = f"{tmp_path}/syncd.toml"
    with open(config, "w") as f:
        f.write('[daemon]\njitter = "99999999999d"\nhang_after = "2h1h"\n')
    result = syncd("--config", config, "config", "check")
    assert result.returncode == 1
    assert [line.split(": ")[1] for line in errors(result)] == [
        "daemon.jitter",
        "daemon.hang_after",
    ]


def test_the_hint_lists_every_unit() -> None:
    for args in (["ls", "--help"], ["history", "--help"]):
        text = " ".join(syncd(*args).stdout.split())
        assert "units w d h m s, largest first" in text
        for example in ("90s", "5m", "2h", "3d", "1w", "1h30m"):
            assert example in text
