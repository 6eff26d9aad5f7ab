"""Annotated example configs, one per tool type; installed as the package data of
`syncd.examples`, which `syncd config example` prints."""
