-- Timestamps: updated_at is the time of the last change, whoever made it. The trigger
-- function lives here; each feature's file attaches it to its own tables.

----------------------------------------------------------------------------------------
-- updated_at
----------------------------------------------------------------------------------------

-- Row trigger: stamp updated_at on every UPDATE.
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
