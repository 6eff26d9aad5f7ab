"""Loopback emulators of the source APIs, for tests, the demo and the benchmark.

`server` holds the generic framework (routes, fault injection, traffic recording); each
vendor module (`github`, ...) builds a stateful emulator of that vendor's REST API on it.
Mail is not emulated: `mail` starts real servers (Dovecot for IMAP, aiosmtpd for SMTP) on
loopback.
"""
