-- 0007 row versions, undone: the columns go, and core.touch_updated_at is put back as
-- the repeatable files before 0007 define it (040_timestamps.sql). The current one sets
-- row_version, so it would fail every UPDATE of these tables once the column is gone,
-- including the data fixes of older revisions' up files on a later upgrade. A migrate to
-- head re-applies the current one.
ALTER TABLE core.users DROP COLUMN row_version;
ALTER TABLE core.tasks DROP COLUMN row_version;
ALTER TABLE core.projects DROP COLUMN row_version;
ALTER TABLE core.memberships DROP COLUMN row_version;
ALTER TABLE core.tenants DROP COLUMN row_version;

CREATE OR REPLACE FUNCTION core.touch_updated_at()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
