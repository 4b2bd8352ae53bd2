"""The error registry (db/errors.py) is the one error contract: every SQLSTATE the SQL raises
has an entry, codes are snake_case and unambiguous, the API, the OpenAPI document and
sql/README.md's "Error contract" section all follow it, and api/ names no SQLSTATE literally.

No database needed: the SQL files are read as text, the mapping is exercised with stand-in errors.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from api import errors as api_errors
from api import openapi
from db import PROJECT_ROOT, errors

#: Where SQL that raises lives (sql/versions/ included: a constraint trigger may raise too).
SQL_DIRS = ("sql", "policies", "analytics")
#: `USING ERRCODE = 'TN001'` and `RAISE [level] SQLSTATE 'TN001'`, in any case and spacing.
RAISED = re.compile(r"""(?:\bERRCODE\s*=\s*|\bRAISE\s+(?:\w+\s+)?SQLSTATE\s+)'([^']*)'""", re.IGNORECASE)


def raised(sql: str) -> list[tuple[int, str]]:
    """(line, SQLSTATE) for every SQLSTATE raised in `sql`."""
    return [(sql.count("\n", 0, match.start()) + 1, match.group(1)) for match in RAISED.finditer(sql)]


def unregistered(sql: str, where: str = "<sql>") -> list[str]:
    """`where:line: XXXXX` for each SQLSTATE raised in `sql` that the registry lacks."""
    return [f"{where}:{line}: {state}" for line, state in raised(sql) if errors.lookup(state) is None]


def sql_files(root: Path = PROJECT_ROOT) -> list[Path]:
    return sorted(path for folder in SQL_DIRS for path in (root / folder).rglob("*.sql"))


# -- the SQL against the registry -------------------------------------------------------------------------------


def test_every_sqlstate_the_sql_raises_is_registered():
    files = sql_files()
    assert any(path.parent.name == "versions" for path in files) and len(files) > 20, files
    found = {state for path in files for _, state in raised(path.read_text())}
    assert {"TA005", "TN001", "P0002", "23505"} <= found, f"the scan finds too little: {sorted(found)}"
    missing = [
        problem for path in files for problem in unregistered(path.read_text(), str(path.relative_to(PROJECT_ROOT)))
    ]
    assert not missing, "SQLSTATEs raised but not in db/errors.py (add an entry):\n" + "\n".join(missing)


def test_the_scan_reports_an_unknown_sqlstate():
    sql = """
        RAISE EXCEPTION 'fine' USING ERRCODE = 'TA005';
        RAISE EXCEPTION 'new' USING
            errcode='TZ999', COLUMN = 'x';
        RAISE WARNING SQLSTATE 'TZ998';
        RAISE EXCEPTION 'by name' USING ERRCODE = 'unique_violation';
    """
    assert raised(sql) == [(2, "TA005"), (4, "TZ999"), (5, "TZ998"), (6, "unique_violation")]
    # a condition name is refused too: the contract is written in SQLSTATEs
    assert unregistered(sql, "x.sql") == ["x.sql:4: TZ999", "x.sql:5: TZ998", "x.sql:6: unique_violation"]


# -- the registry itself ------------------------------------------------------------------------------------------


def test_codes_are_snake_case_words():
    wrong = [(e.sqlstate, code) for e in errors.REGISTRY for code in e.codes if not errors.CODE_PATTERN.fullmatch(code)]
    assert not wrong, wrong
    for bad in ("404_not_found", "NotFound", "not-found", "not__found", "_x", "x_"):
        assert not errors.CODE_PATTERN.fullmatch(bad), bad


def test_one_code_per_sqlstate_and_constraint():
    keys: list[tuple[str, str | None]] = [(e.sqlstate, None) for e in errors.REGISTRY]
    keys += [(e.sqlstate, constraint) for e in errors.REGISTRY for constraint in e.by_constraint]
    assert [key for key, n in Counter(keys).items() if n > 1] == []
    # one entry per SQLSTATE, but for those told apart by their message (a Citus XX000)
    assert len(errors.BY_SQLSTATE) == len([e for e in errors.REGISTRY if e.message_pattern is None])


def test_a_code_means_one_status():
    statuses: dict[str, set[int]] = {}
    for entry in errors.REGISTRY:
        for code in entry.codes:
            statuses.setdefault(code, set()).add(entry.status)
    assert {code: s for code, s in statuses.items() if len(s) > 1} == {}


def test_entries_are_complete():
    for entry in errors.REGISTRY:
        assert re.fullmatch(r"[0-9A-Z]{5}", entry.sqlstate), entry
        # a 5xx is planned for only as "retry later": 503 with a Retry-After
        assert 400 <= entry.status < 500 or (entry.status == 503 and entry.retry_after), entry
        assert entry.title.strip() and entry.meaning.strip() and "|" not in entry.title + entry.meaning, entry
    assert errors.SESSION_REVOKED.sqlstate == "TA005" and errors.SESSION_REVOKED.status == 401
    assert errors.UNIQUE_VIOLATION.code_for("users_email_key") == "email_taken"
    assert errors.UNIQUE_VIOLATION.code_for("some_other_key") == errors.UNIQUE_VIOLATION.code_for(None) == "conflict"
    with pytest.raises(TypeError):
        errors.UNIQUE_VIOLATION.by_constraint["x"] = "y"


def test_label_names_a_registered_sqlstate():
    assert errors.label("TN001") == "TN001 tenant_suspended"
    assert errors.label("0A000") == "0A000"


# -- the API, OpenAPI and README follow it -----------------------------------------------------------------------


@pytest.mark.parametrize("entry", errors.REGISTRY, ids=lambda e: e.sqlstate)
def test_the_api_answers_as_registered(entry):
    # an entry told apart by its message gets an error with such a message
    message = "could not find valid entry for shard 1" if entry.message_pattern else "refused"
    assert entry.message_pattern is None or re.search(entry.message_pattern, message), entry
    error = type("Raised", (psycopg.Error,), {"sqlstate": entry.sqlstate})(message)
    problem = api_errors.problem_from_database(error)
    assert (problem.status, problem.code) == (entry.status, entry.code)


def test_an_unregistered_sqlstate_is_a_bare_500():
    error = type("Raised", (psycopg.Error,), {"sqlstate": "TZ999"})("internal detail")
    problem = api_errors.problem_from_database(error)
    assert (problem.status, problem.code) == (500, "internal_error") and "internal" not in problem.detail


@pytest.mark.parametrize(
    ("title", "code"),
    [
        ("404 Not Found", "not_found"),
        ("405 Method Not Allowed", "method_not_allowed"),
        ("415 Unsupported Media Type", "unsupported_media_type"),
        ("Invalid parameter", "invalid_parameter"),
        (None, "error"),
    ],
)
def test_falcon_errors_get_codes_in_the_same_style(title, code):
    assert api_errors.code_from_title(title) == code
    assert errors.CODE_PATTERN.fullmatch(code)


def test_no_sqlstate_literals_in_api_python():
    """api/ refers to `db_errors.SESSION_REVOKED.sqlstate`, never to "TA005"."""
    sqlstates = set(errors.BY_SQLSTATE)
    found = [
        f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}: {node.value!r}"
        for path in sorted((PROJECT_ROOT / "api").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Constant) and node.value in sqlstates
    ]
    assert not found, "use the registry's names (db/errors.py) instead:\n" + "\n".join(found)


def test_openapi_describes_every_registered_status_with_its_codes():
    for status, codes in errors.codes_by_status().items():
        assert status in openapi.ERROR_TEXT, f"{status} has no text in api/openapi.py ERROR_TEXT"
        description = openapi.error_description(status)
        assert all(f"`{code}`" in description for code in codes), description
    assert "`tenant_suspended`" in openapi.error_description(403)
    assert openapi.error_description(429) == openapi.ERROR_TEXT[429]  # no database code comes with it


def test_the_readme_section_is_the_generated_one():
    section = errors.readme_section(errors.README.read_text())
    assert section == errors.markdown_table(), (
        "sql/README.md's error contract differs from db/errors.py: regenerate it with `python -m db.errors --write`"
    )
    for entry in errors.REGISTRY:
        assert f"| `{entry.sqlstate}` |" in section and f"`{entry.code}`" in section


def test_regenerating_touches_only_the_section(tmp_path):
    stale = f"# before\n\ntext\n{errors.BEGIN}\n| `TA005` | old |\n{errors.END}\n\nafter\n"
    path = tmp_path / "README.md"
    path.write_text(stale)
    assert errors.readme_section(stale) != errors.markdown_table()
    assert errors.write_readme(path) is True
    assert path.read_text() == f"# before\n\ntext\n{errors.BEGIN}\n{errors.markdown_table()}\n{errors.END}\n\nafter\n"
    assert errors.write_readme(path) is False
    with pytest.raises(ValueError):
        errors.readme_section("no markers here")
