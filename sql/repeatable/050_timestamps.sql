-- updated_at is the time of the last change, whoever made it.

-- Row trigger: stamp updated_at on every UPDATE.
CREATE OR REPLACE FUNCTION core.touch_updated_at()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER touch_updated_at
    BEFORE UPDATE ON core.tenants
    FOR EACH ROW EXECUTE FUNCTION core.touch_updated_at();

CREATE OR REPLACE TRIGGER touch_updated_at
    BEFORE UPDATE ON core.projects
    FOR EACH ROW EXECUTE FUNCTION core.touch_updated_at();

CREATE OR REPLACE TRIGGER touch_updated_at
    BEFORE UPDATE ON core.tasks
    FOR EACH ROW EXECUTE FUNCTION core.touch_updated_at();
