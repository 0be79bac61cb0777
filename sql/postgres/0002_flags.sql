-- Anomaly flags: users who gained more points in an hour than ANOMALY_POINTS_PER_HOUR.
-- A cleared flag keeps its row with cleared_at set: the next window starts after the clear,
-- so the points the operator accepted do not raise the flag again at once.
CREATE TABLE user_flags (
    user_id    text PRIMARY KEY REFERENCES users (user_id),
    points     bigint NOT NULL,
    flagged_at timestamptz NOT NULL DEFAULT now(),
    cleared_at timestamptz
);

-- The sliding-window sum reads one user's recent events by time.
CREATE INDEX score_events_user_time ON score_events (user_id, created_at);
