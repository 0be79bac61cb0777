"""Caller authentication: JWT verification (tokens.py) and the verification keys (keyring.py)."""
