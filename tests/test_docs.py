"""Documentation that is generated from the code stays generated: the README's settings
table is exactly what db.settings.markdown_table() prints."""

from __future__ import annotations

import re

from db import PROJECT_ROOT
from db.settings import Settings, markdown_table


def test_the_readme_settings_table_is_generated_from_the_settings_class():
    readme = (PROJECT_ROOT / "README.md").read_text()
    found = re.search(r"<!-- settings:begin -->\n(.*?)<!-- settings:end -->", readme, re.S)
    assert found, "README.md lost its <!-- settings:begin/end --> markers"
    assert found[1] == markdown_table(), "README settings table is stale: run `.venv/bin/python -m db.settings --write`"


def test_every_setting_is_described():
    undocumented = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not undocumented
