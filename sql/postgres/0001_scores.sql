-- Users, their current score and the audit log of score events.
-- One sequence orders every score event and every user creation, so equal scores
-- rank by who reached them first (the smaller seq).
CREATE SEQUENCE score_seq;

CREATE TABLE users (
    user_id      text PRIMARY KEY,
    display_name text,
    score        bigint NOT NULL DEFAULT 0,
    seq          bigint NOT NULL DEFAULT nextval('score_seq'),
    deleted_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- The top-N order as an index scan; deleted users are not in it.
CREATE INDEX users_rank ON users (score DESC, seq ASC) WHERE deleted_at IS NULL;

CREATE TABLE score_events (
    id          bigint PRIMARY KEY DEFAULT nextval('score_seq'),
    action_id   text NOT NULL UNIQUE,
    user_id     text NOT NULL REFERENCES users (user_id),
    action      text NOT NULL,
    delta       bigint NOT NULL,
    score_after bigint NOT NULL,
    caller      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX score_events_user ON score_events (user_id, id DESC);
