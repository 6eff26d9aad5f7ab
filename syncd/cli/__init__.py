"""The `syncd` command. The group and exit codes are in syncd.cli.main; shared options in
syncd.cli.options; each area's commands in a module of their own."""

from syncd.cli.main import SyncdGroup, cli, main

__all__ = ["SyncdGroup", "cli", "main"]
