"""Benchmarks of the scoreboard's HTTP API, each reported as a ratio to aiohttp's own cost (`python -m bench`)."""
