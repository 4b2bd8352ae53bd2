"""Local services for development and one-machine use: the embedded PostgreSQL, a local
Redis, and a Citus dev cluster from installed Citus binaries. All listen on loopback and
keep their files in the state folder (TENANTRY_STATE_DIR, default `.tenantry/`)."""
