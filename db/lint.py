"""`tenantry db lint`: the schema's multi-tenancy and Citus readiness, read from the catalog.

A tenant table is a table with a tenant_id column, except global lookups tagged
`@reference` in their table comment. Every later issue adds tables; this check keeps
them honest. Each problem names the object and the rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from db.sqlscript import scalar

#: Schemas that hold the project's objects (tables live in core; the others hold code).
PROJECT_SCHEMAS = ("core", "api", "auth", "ops", "admin", "analytics", "audit", "usage", "billing")
#: The table every tenant table is colocated with on Citus.
COLOCATION_ANCHOR = "core.tenants"


@dataclass(frozen=True, order=True)
class Problem:
    obj: str
    rule: str

    def __str__(self) -> str:
        return f"{self.obj}: {self.rule}"


_TABLES = """
SELECT c.oid, c.oid::regclass::text AS name,  -- schema-qualified: no project schema is on search_path
       EXISTS (SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped) AS has_tenant_id,
       COALESCE(obj_description(c.oid, 'pg_class'), '') LIKE '@reference%%' AS is_reference,
       c.relrowsecurity, c.relforcerowsecurity,
       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies,
       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid
           AND (pg_get_expr(p.polqual, p.polrelid) LIKE '%%current_tenant_id()%%'
                OR pg_get_expr(p.polwithcheck, p.polrelid) LIKE '%%current_tenant_id()%%')) AS tenant_policies,
       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid AND p.polroles = '{0}') AS public_policies
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

# On Citus: how each table is distributed.
_CITUS_TABLES = """
SELECT t.table_name::text, t.citus_table_type, t.distribution_column, t.colocation_id
  FROM citus_tables t
"""

# SECURITY DEFINER functions without a fixed search_path, and functions PUBLIC may run.
_FUNCTIONS = """
SELECT p.oid::regprocedure::text,
       p.prosecdef AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) s WHERE s LIKE 'search_path=%%'),
       EXISTS (SELECT 1 FROM aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) a
                WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = ANY(%s)
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
"""


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
            problems.append(Problem(COLOCATION_ANCHOR, "missing: run `tenantry db migrate` first"))

        for (
            oid,
            name,
            has_tenant_id,
            is_reference,
            rls,
            force,
            policies,
            tenant_policies,
            public_policies,
        ) in conn.execute(_TABLES, (list(schemas),)):
            if has_tenant_id:
                # tenant data, including global lookups that carry tenant ids: RLS on
                if not rls:
                    problems.append(Problem(name, "row level security is not enabled"))
                if not force:
                    problems.append(Problem(name, "row level security is not forced (owner would bypass it)"))
                if policies == 0:
                    problems.append(Problem(name, "has no row level security policy"))
                elif tenant_policies == 0:
                    problems.append(Problem(name, "no policy compares with core.current_tenant_id()"))
                if public_policies:
                    problems.append(Problem(name, "a policy applies TO PUBLIC; scope policies to a role"))

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
            elif kind != "reference":
                problems.append(Problem(name, "catalog or global lookup is not a reference table"))

        for signature, definer_without_path, public_execute in conn.execute(_FUNCTIONS, (list(schemas),)):
            if definer_without_path:
                problems.append(Problem(signature, "SECURITY DEFINER without SET search_path"))
            if public_execute:
                problems.append(Problem(signature, "PUBLIC may execute it; grant it to a role instead"))
    return sorted(problems)
