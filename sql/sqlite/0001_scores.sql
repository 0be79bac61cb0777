-- Users, their current score and the audit log of score events.
-- One counter orders every score event and every user creation, so equal scores
-- rank by who reached them first (the smaller seq). SQLite has no sequences:
-- writers take the next value from score_seq inside their (serialised) transaction.
CREATE TABLE score_seq (value INTEGER NOT NULL);
INSERT INTO score_seq (value) VALUES (0);

CREATE TABLE users (
    user_id      TEXT PRIMARY KEY,
    display_name TEXT,
    score        INTEGER NOT NULL DEFAULT 0,
    seq          INTEGER NOT NULL,
    deleted_at   TEXT,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- The top-N order as an index scan; deleted users are not in it.
CREATE INDEX users_rank ON users (score DESC, seq ASC) WHERE deleted_at IS NULL;

CREATE TABLE score_events (
    id          INTEGER PRIMARY KEY,
    action_id   TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL REFERENCES users (user_id),
    action      TEXT NOT NULL,
    delta       INTEGER NOT NULL,
    score_after INTEGER NOT NULL,
    caller      TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX score_events_user ON score_events (user_id, id DESC);
