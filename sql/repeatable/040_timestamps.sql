-- Timestamps and row versions: updated_at is the time of the last change, whoever made
-- it, and row_version counts the changes (migration 0007): the ETag of conditional
-- requests (If-Match), raised here so that every update path raises it. The trigger
-- function lives here; each feature's file attaches it to its own tables, which all have
-- both columns.

----------------------------------------------------------------------------------------
-- updated_at and row_version
----------------------------------------------------------------------------------------

-- Row trigger: stamp updated_at and raise row_version by one on every UPDATE (a value
-- the statement set for row_version is ignored: only this trigger moves it).
CREATE OR REPLACE FUNCTION core.touch_updated_at()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.updated_at := now();
    NEW.row_version := OLD.row_version + 1;
    RETURN NEW;
END
$$;

----------------------------------------------------------------------------------------
-- conditional changes (If-Match, If-Unmodified-Since)
----------------------------------------------------------------------------------------

-- The update and delete functions of versioned rows take p_if_match (the row versions
-- the client accepts, from If-Match; NULL: any) and p_if_unmodified_since (NULL: any),
-- and put both in their UPDATE's (or DELETE's) WHERE, so the check and the change are
-- one atomic step: under READ COMMITTED a concurrent change makes the statement wait for
-- the row and re-check the WHERE on the new version, so of N clients that send the same
-- version exactly one wins. When no row matched, the function tells a missing row
-- (P0002) from a changed one (TN020, below).

-- If-Unmodified-Since: HTTP dates have whole seconds (Last-Modified is updated_at cut to
-- the second), so "not modified since D" is updated_at < D + 1 second. The functions
-- compute that bound into a variable before the statement: Citus refuses a STABLE
-- expression (timestamptz + interval) in a modification (docs/citus.md, fact 14).
--
-- A changed row is TN020 ('<thing> <id> has changed since the version you sent'),
-- raised by core.raise_changed (030_shared_checks.sql).
