-- Membership rules kept by triggers, whatever the path of the change: a tenant always
-- keeps at least one owner (TA040), and a suspended or deleted tenant's memberships,
-- invitations and new API keys cannot change (TN001/TN002, via core.guard_tenant_writes).

-- Row trigger on core.memberships: refuse to remove or demote the last owner.
CREATE OR REPLACE FUNCTION core.keep_an_owner()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM core.memberships WHERE tenant_id = OLD.tenant_id AND role = 'owner') THEN
        RAISE EXCEPTION 'a tenant must keep at least one owner' USING
            ERRCODE = 'TA040',
            HINT = 'Make another member an owner first.';
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER keep_an_owner
    AFTER UPDATE OF role OR DELETE ON core.memberships
    FOR EACH ROW WHEN (OLD.role = 'owner')
    EXECUTE FUNCTION core.keep_an_owner();

CREATE OR REPLACE TRIGGER guard_tenant_writes
    BEFORE INSERT OR UPDATE OR DELETE ON core.memberships
    FOR EACH ROW EXECUTE FUNCTION core.guard_tenant_writes();

CREATE OR REPLACE TRIGGER guard_tenant_writes
    BEFORE INSERT OR UPDATE OR DELETE ON core.invitations
    FOR EACH ROW EXECUTE FUNCTION core.guard_tenant_writes();

-- only new keys: using a key (last_used_at, use_count) is a read of the tenant's data
CREATE OR REPLACE TRIGGER guard_tenant_writes
    BEFORE INSERT ON core.api_keys
    FOR EACH ROW EXECUTE FUNCTION core.guard_tenant_writes();

CREATE OR REPLACE TRIGGER touch_updated_at
    BEFORE UPDATE ON core.memberships
    FOR EACH ROW EXECUTE FUNCTION core.touch_updated_at();

CREATE OR REPLACE TRIGGER touch_updated_at
    BEFORE UPDATE ON core.users
    FOR EACH ROW EXECUTE FUNCTION core.touch_updated_at();
