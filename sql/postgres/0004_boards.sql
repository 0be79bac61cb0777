-- Boards and periods. A board says which actions count toward it (NULL: all), its periods
-- (all, daily, weekly, monthly) and the time zone of their boundaries. main's `all` period is
-- the users table; every other (board, period key) pair is a row set of board_scores, written
-- by the increment's own transaction (periods are keys, never resets: no job rewrites data).
-- Names and deletion stay on users: reads join it, so a deleted user leaves every board at once.
CREATE TABLE boards (
    board_id   text PRIMARY KEY,
    title      text NOT NULL,
    actions    text[],
    periods    text[] NOT NULL,
    time_zone  text NOT NULL DEFAULT 'UTC',
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO boards (board_id, title, actions, periods) VALUES ('main', 'Scoreboard', NULL, '{all}');

-- seq is the id of the event that set the score on this board and period: ties rank by who
-- reached the score first, as on main.
CREATE TABLE board_scores (
    board_id   text NOT NULL,
    period_key text NOT NULL,
    user_id    text NOT NULL REFERENCES users (user_id),
    score      bigint NOT NULL,
    seq        bigint NOT NULL,
    PRIMARY KEY (board_id, period_key, user_id)
);

-- The rank order of one (board, period key) as an index scan.
CREATE INDEX board_scores_rank ON board_scores (board_id, period_key, score DESC, seq ASC);
