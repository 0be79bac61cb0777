-- board_scores rows are written only by the increment's statement, for users whose rows it has
-- just upserted and locked, and users are never removed (a deletion sets deleted_at; reads join
-- users and leave deleted users out). The foreign key re-checked every row of every batch
-- (a lookup and a key-share lock of the user's row each, about a sixth of a batch's time with
-- 3 boards x 3 periods) and guarded nothing the statement does not.
ALTER TABLE board_scores DROP CONSTRAINT board_scores_user_id_fkey;
