"""The `syncd` command. The group, its exit codes and `main` are in syncd.cli.main; shared
options in syncd.cli.options; each area's commands in a module of their own.

Note: the name `syncd.cli.main` is the function (the console script's entry point), which
hides the submodule of the same name; import the group from here or from syncd.cli.main
with `from syncd.cli.main import ...`."""

from syncd.cli.main import SyncdGroup, cli, main

__all__ = ["SyncdGroup", "cli", "main"]
