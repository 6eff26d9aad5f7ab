"""The web board (`syncd web`): a read-only view of the ledger for people and wall screens."""
