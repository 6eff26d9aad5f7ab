"""The `syncd` command. The group, its exit codes and `main` are in syncd.cli.main; shared
options in syncd.cli.options; each area's commands in a module of their own.

`main` is deliberately not re-exported here: the name would hide the submodule."""

from syncd.cli.main import SyncdGroup, cli

__all__ = ["SyncdGroup", "cli"]
