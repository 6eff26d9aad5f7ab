"""syncd: one ledger of who owns each request, kept in step across every tool that holds it."""

__version__ = "0.1.0"
