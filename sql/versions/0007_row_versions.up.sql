-- 0007 row versions: every table whose rows the API updates (those with updated_at and
-- the core.touch_updated_at trigger) gets a row version, a counter that
-- core.touch_updated_at (sql/repeatable/040_timestamps.sql) raises by one on every
-- UPDATE, whatever the path. It is the resource's ETag (api/resources/base.py): a client
-- that read version 3 sends If-Match: "3", and the update functions change the row only
-- while it is still at that version (412 otherwise), so concurrent read-modify-writes
-- cannot overwrite each other unseen. A constant default adds the column without
-- rewriting the table; existing rows start at 1. One statement per ALTER (docs/citus.md,
-- fact 19).

ALTER TABLE core.tenants ADD COLUMN row_version bigint NOT NULL DEFAULT 1;
COMMENT ON COLUMN core.tenants.row_version IS
    'Raised by one on every update (core.touch_updated_at): the tenant''s ETag for conditional requests.';

ALTER TABLE core.memberships ADD COLUMN row_version bigint NOT NULL DEFAULT 1;
COMMENT ON COLUMN core.memberships.row_version IS
    'Raised by one on every update (core.touch_updated_at): the membership''s ETag for conditional requests.';

ALTER TABLE core.projects ADD COLUMN row_version bigint NOT NULL DEFAULT 1;
COMMENT ON COLUMN core.projects.row_version IS
    'Raised by one on every update (core.touch_updated_at): the project''s ETag for conditional requests.';

ALTER TABLE core.tasks ADD COLUMN row_version bigint NOT NULL DEFAULT 1;
COMMENT ON COLUMN core.tasks.row_version IS
    'Raised by one on every update (core.touch_updated_at): the task''s ETag for conditional requests.';

ALTER TABLE core.users ADD COLUMN row_version bigint NOT NULL DEFAULT 1;
COMMENT ON COLUMN core.users.row_version IS
    'Raised by one on every update (core.touch_updated_at): the profile''s ETag for conditional requests.';
