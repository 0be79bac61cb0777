-- The change feed behind the read model's repair, and versioned display names.
-- SQLite runs one write transaction at a time, so a counter bumped by a trigger on
-- every insert or update of a user orders changes in commit order: "changes at or
-- above my last horizon" misses nothing and reads only what changed.
-- name_version grows with every change of display_name, so an older name can never
-- overwrite a newer one in the read model.
CREATE TABLE change_counter (value INTEGER NOT NULL);
INSERT INTO change_counter (value) VALUES (0);
ALTER TABLE users ADD COLUMN changed_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN name_version INTEGER NOT NULL DEFAULT 0;

-- The inner UPDATEs set only columns the triggers do not watch: no recursion.
CREATE TRIGGER users_inserted AFTER INSERT ON users
BEGIN
    UPDATE change_counter SET value = value + 1;
    UPDATE users SET changed_seq = (SELECT value FROM change_counter) WHERE user_id = NEW.user_id;
END;

CREATE TRIGGER users_updated AFTER UPDATE OF score, seq, display_name, deleted_at ON users
BEGIN
    UPDATE change_counter SET value = value + 1;
    UPDATE users SET changed_seq = (SELECT value FROM change_counter),
        name_version = name_version + (NEW.display_name IS NOT OLD.display_name)
    WHERE user_id = NEW.user_id;
END;

-- Keyset pages of the feed: (changed_seq, user_id) after the last row read.
CREATE INDEX users_changes ON users (changed_seq, user_id);
