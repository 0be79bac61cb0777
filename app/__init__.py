"""Live scoreboard service: durable, idempotent score increments and a live top 10."""
