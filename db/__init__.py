"""tenantry's database layer: settings, servers, migrations, tenant context, Citus ops."""

from pathlib import Path

#: The checkout root: sql/, policies/, analytics/ and migrations/ are read from here.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
