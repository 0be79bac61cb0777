"""Tools that drive a running server from outside (the demo load)."""
