-- The change feed behind the read model's repair, and versioned display names.
-- Every insert or update of a user records the id of the transaction that made it
-- (a trigger, so no writer has to remember). A repairer takes the horizon first (the
-- oldest transaction still running, pg_snapshot_xmin): every change below it is
-- committed and visible, so "changes at or above my last horizon" misses nothing,
-- whatever order concurrent transactions commit in, and reads only what changed.
-- name_version grows with every change of display_name (under the row lock), so an
-- older name can never overwrite a newer one in the read model.
ALTER TABLE users ADD COLUMN changed_xid bigint NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN name_version bigint NOT NULL DEFAULT 0;

CREATE FUNCTION users_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_xid := pg_current_xact_id()::text::bigint;
    IF TG_OP = 'UPDATE' AND NEW.display_name IS DISTINCT FROM OLD.display_name THEN
        NEW.name_version := OLD.name_version + 1;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER users_changed BEFORE INSERT OR UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION users_changed();

-- Keyset pages of the feed: (changed_xid, user_id) after the last row read.
CREATE INDEX users_changes ON users (changed_xid, user_id);
