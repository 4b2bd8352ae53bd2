"""`tenantry db lint`: the schema's multi-tenancy and Citus readiness, read from the catalog.

A tenant table is a table with a tenant_id column, except global lookups tagged
`@reference` in their table comment. A global table with hot writes is tagged
`@distributed-by <column>` instead (docs/citus.md, fact 21). Every later issue adds
tables; this check keeps them honest. Each problem names the object and the rule.

Privileges, too: every SECURITY DEFINER function sets `search_path = pg_catalog, pg_temp`
(a caller's temporary types come last, never before the catalog's); no object of the
project's schemas is owned by a superuser (tenantry_owner owns them); no application
role may create temporary objects in the database, nor bypass row level security.

The audit log: every tenant table of core has the audit row trigger or is named, with a reason,
by core.audit_excluded_tables(); no bytea column (hashes, ciphertext) of an audited table
escapes core.audit_redacts(). The audit tables themselves obey the tenant-table rules.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from db.settings import ANALYST_ROLE, APP_ROLES, OWNER_ROLE
from db.sqlscript import scalar

#: Schemas that hold the project's objects (tables live in core; the others hold code).
PROJECT_SCHEMAS = ("core", "api", "auth", "ops", "admin", "analytics", "audit", "usage", "billing")
#: Where the per-tenant rollups for analysts live: their RLS lets the analyst role read
#: every tenant (and nothing else), instead of comparing with core.current_tenant_id().
ANALYTICS_SCHEMA = "analytics"
#: The table every tenant table is colocated with on Citus.
COLOCATION_ANCHOR = "core.tenants"
#: The search_path every SECURITY DEFINER function sets, temp explicitly last (the
#: PostgreSQL manual's advice: otherwise pg_temp is searched first for types and tables).
DEFINER_SEARCH_PATH = ("pg_catalog", "pg_temp")


@dataclass(frozen=True, order=True)
class Problem:
    obj: str
    rule: str

    def __str__(self) -> str:
        return f"{self.obj}: {self.rule}"


_TABLES = r"""
SELECT c.oid, c.oid::regclass::text AS name,  -- schema-qualified: no project schema is on search_path
       EXISTS (SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped) AS has_tenant_id,
       COALESCE(obj_description(c.oid, 'pg_class'), '') LIKE '@reference%%' AS is_reference,
       -- a global table with hot writes, distributed on another column (docs/citus.md, fact 21)
       substring(COALESCE(obj_description(c.oid, 'pg_class'), '')
                 FROM '^@distributed-by ([a-z_][a-z0-9_]*)') AS distributed_by,
       c.relrowsecurity, c.relforcerowsecurity,
       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies,
       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid
           AND (pg_get_expr(p.polqual, p.polrelid) LIKE '%%current_tenant_id()%%'
                OR pg_get_expr(p.polwithcheck, p.polrelid) LIKE '%%current_tenant_id()%%')) AS tenant_policies,
       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid AND p.polroles = '{0}') AS public_policies,
       -- analytics tables: policies other than SELECT for the analyst role alone
       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid
           AND NOT (p.polcmd = 'r' AND p.polroles = ARRAY[to_regrole(%s)::oid])) AS other_than_analyst_reads
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%s)
 ORDER BY name
"""

# Constraints (PK, UNIQUE, FK) and unique indexes whose columns lack tenant_id.
_KEYS_WITHOUT_TENANT = """
SELECT con.conname, con.contype::text, pg_get_constraintdef(con.oid)
  FROM pg_constraint con
 WHERE con.conrelid = %(rel)s AND con.contype IN ('p', 'u', 'f')
   AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = con.conrelid AND a.attname = 'tenant_id'
                      AND a.attnum = ANY(con.conkey))
   -- a foreign key to a catalog or reference table (no tenant_id there) is fine
   AND NOT (con.contype = 'f' AND NOT EXISTS (
            SELECT 1 FROM pg_attribute a
             WHERE a.attrelid = con.confrelid AND a.attname = 'tenant_id' AND NOT a.attisdropped))
UNION ALL
SELECT i.relname, 'i', pg_get_indexdef(i.oid)
  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
 WHERE x.indrelid = %(rel)s AND x.indisunique
   AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = x.indexrelid)
   AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = x.indrelid AND a.attname = 'tenant_id'
                      AND a.attnum = ANY(x.indkey::int2[]))
"""

_HAS_PK = "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = %s AND contype = 'p')"

# The audit log (sql/repeatable/500_audit.sql): whether the table has the audit row
# trigger, whether core.audit_excluded_tables() names it (with its reason), and its bytea
# columns (hashes, ciphertext) that core.audit_redacts() would copy into the log.
_AUDIT = """
SELECT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = %(rel)s AND t.tgname = 'audit_row_change'),
       EXISTS (SELECT 1 FROM core.audit_excluded_tables() e WHERE e.table_name = %(name)s),
       ARRAY(SELECT a.attname::text FROM pg_attribute a
              WHERE a.attrelid = %(rel)s AND a.attnum > 0 AND NOT a.attisdropped
                AND a.atttypid = 'bytea'::regtype AND NOT core.audit_redacts(a.attname))
"""

# On Citus: how each table is distributed.
_CITUS_TABLES = """
SELECT t.table_name::text, t.citus_table_type, t.distribution_column, t.colocation_id
  FROM citus_tables t
"""

# Functions: whether SECURITY DEFINER, their search_path setting, whether PUBLIC may run them.
_FUNCTIONS = """
SELECT p.oid::regprocedure::text, p.prosecdef,
       (SELECT substr(s, length('search_path=') + 1) FROM unnest(p.proconfig) s WHERE s LIKE 'search_path=%%'),
       EXISTS (SELECT 1 FROM aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) a
                WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = ANY(%s)
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
"""

# Schemas, relations and functions of the project's schemas that a superuser owns.
_SUPERUSER_OWNED = """
SELECT n.nspname::text, 'schema', r.rolname::text
  FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner
 WHERE n.nspname = ANY(%(s)s) AND r.rolsuper
UNION ALL
SELECT c.oid::regclass::text,
       CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'view' WHEN 'S' THEN 'sequence' ELSE 'table' END,
       r.rolname::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_roles r ON r.oid = c.relowner
 WHERE n.nspname = ANY(%(s)s) AND r.rolsuper AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
UNION ALL
SELECT p.oid::regprocedure::text, 'function', r.rolname::text
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_roles r ON r.oid = p.proowner
 WHERE n.nspname = ANY(%(s)s) AND r.rolsuper
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
"""

# Application roles that may create temporary objects in this database (through PUBLIC,
# a grant or a membership), and those that bypass RLS (SUPERUSER or BYPASSRLS, their own
# or that of a role they may SET ROLE to).
_APP_ROLES = """
SELECT r.rolname::text,
       has_database_privilege(r.oid, current_database(), 'TEMPORARY'),
       EXISTS (SELECT 1 FROM pg_roles b
                WHERE (b.rolsuper OR b.rolbypassrls) AND pg_has_role(r.oid, b.oid, 'MEMBER'))
  FROM pg_roles r
 WHERE r.rolname = ANY(%s)
 ORDER BY 1
"""


def _search_path(setting: str | None) -> tuple[str, ...]:
    """A function's search_path setting as a list of schema names, unquoted."""
    if setting is None:
        return ()
    return tuple(part.strip().strip('"') for part in setting.split(","))


def lint(url: str, schemas: tuple[str, ...] = PROJECT_SCHEMAS) -> list[Problem]:
    """Every rule violation in `schemas`, sorted; empty when the schema is sound."""
    problems: list[Problem] = []
    with psycopg.connect(url) as conn:
        citus = scalar(conn, "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
        placement = {}
        if citus:
            placement = {row[0]: row[1:] for row in conn.execute(_CITUS_TABLES)}
        anchor = placement.get(COLOCATION_ANCHOR)
        if COLOCATION_ANCHOR.split(".")[0] in schemas and not scalar(
            conn, "SELECT to_regclass(%s) IS NOT NULL", (COLOCATION_ANCHOR,)
        ):
            return [Problem(COLOCATION_ANCHOR, "missing: run `tenantry db migrate` first")]  # nothing more to say

        audit = bool(scalar(conn, "SELECT to_regprocedure('core.audit_excluded_tables()') IS NOT NULL"))
        for (
            oid,
            name,
            has_tenant_id,
            is_reference,
            distributed_by,
            rls,
            force,
            policies,
            tenant_policies,
            public_policies,
            other_than_analyst_reads,
        ) in conn.execute(_TABLES, (ANALYST_ROLE, list(schemas))):
            if has_tenant_id:
                # tenant data, including global lookups that carry tenant ids: RLS on
                if not rls:
                    problems.append(Problem(name, "row level security is not enabled"))
                if not force:
                    problems.append(Problem(name, "row level security is not forced (owner would bypass it)"))
                if policies == 0:
                    problems.append(Problem(name, "has no row level security policy"))
                elif name.startswith(f"{ANALYTICS_SCHEMA}."):
                    # per-tenant rollups that analysts read across tenants by design
                    if other_than_analyst_reads:
                        problems.append(
                            Problem(name, f"an analytics table's policies are FOR SELECT TO {ANALYST_ROLE}")
                        )
                elif tenant_policies == 0:
                    problems.append(Problem(name, "no policy compares with core.current_tenant_id()"))
                if public_policies:
                    problems.append(Problem(name, "a policy applies TO PUBLIC; scope policies to a role"))

            # the source tables (core); derived ones elsewhere (analytics' rollups) are not audited
            if audit and has_tenant_id and not is_reference and name.startswith("core."):
                found = conn.execute(_AUDIT, {"rel": oid, "name": name}).fetchone()
                triggered, excluded, secrets = found if found else (False, False, [])
                if not triggered and not excluded:
                    problems.append(
                        Problem(name, "has no audit trigger and core.audit_excluded_tables() does not exclude it")
                    )
                if triggered and excluded:
                    problems.append(Problem(name, "is excluded from the audit log but has its trigger"))
                for column in secrets if triggered else ():
                    problems.append(Problem(name, f"bytea column {column} would be copied into the audit log"))

            if has_tenant_id and not is_reference:
                if not scalar(conn, _HAS_PK, (oid,)):
                    problems.append(Problem(name, "has no primary key (it must include tenant_id)"))
                for conname, kind, definition in conn.execute(_KEYS_WITHOUT_TENANT, {"rel": oid}):
                    what = {"p": "primary key", "u": "unique constraint", "f": "foreign key", "i": "unique index"}[kind]
                    problems.append(Problem(name, f"{what} {conname} lacks tenant_id: {definition}"))

            if not citus:
                continue
            kind, column, colocation = placement.get(name, (None, None, None))
            if has_tenant_id and not is_reference:
                if kind != "distributed" or column != "tenant_id":
                    problems.append(Problem(name, "is not distributed on tenant_id"))
                elif anchor is None or colocation != anchor[2]:
                    problems.append(Problem(name, f"is not colocated with {COLOCATION_ANCHOR}"))
            elif distributed_by:
                if kind != "distributed" or column != distributed_by:
                    problems.append(Problem(name, f"is not distributed on {distributed_by}"))
            elif kind != "reference":
                problems.append(Problem(name, "catalog or global lookup is not a reference table"))

        for signature, definer, search_path, public_execute in conn.execute(_FUNCTIONS, (list(schemas),)):
            if definer and _search_path(search_path) != DEFINER_SEARCH_PATH:
                problems.append(
                    Problem(signature, f"SECURITY DEFINER without SET search_path = {', '.join(DEFINER_SEARCH_PATH)}")
                )
            if public_execute:
                problems.append(Problem(signature, "PUBLIC may execute it; grant it to a role instead"))

        for name, kind, owner in conn.execute(_SUPERUSER_OWNED, {"s": list(schemas)}):
            problems.append(Problem(name, f"{kind} owned by the superuser {owner}; {OWNER_ROLE} must own it"))

        database = scalar(conn, "SELECT current_database()")
        for role, temporary, bypasses_rls in conn.execute(_APP_ROLES, (list(APP_ROLES),)):
            if temporary:
                problems.append(
                    Problem(f"database {database}", f"{role} may create temporary objects (revoke TEMPORARY)")
                )
            if bypasses_rls:
                problems.append(Problem(f"role {role}", "bypasses row level security (SUPERUSER or BYPASSRLS)"))
    return sorted(problems)
