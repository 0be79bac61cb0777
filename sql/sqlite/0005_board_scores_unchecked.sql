-- As in PostgreSQL: board_scores rows are written only for users the same transaction has just
-- written, and users are never removed, so the foreign key checked every row for nothing.
-- SQLite drops a constraint by rebuilding the table.
CREATE TABLE board_scores_unchecked (
    board_id   TEXT NOT NULL,
    period_key TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    score      INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    PRIMARY KEY (board_id, period_key, user_id)
);
INSERT INTO board_scores_unchecked (board_id, period_key, user_id, score, seq)
    SELECT board_id, period_key, user_id, score, seq FROM board_scores;
DROP TABLE board_scores;
ALTER TABLE board_scores_unchecked RENAME TO board_scores;
CREATE INDEX board_scores_rank ON board_scores (board_id, period_key, score DESC, seq ASC);
