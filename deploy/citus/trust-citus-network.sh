#!/bin/sh
# Runs once, when the coordinator's data folder is created (/docker-entrypoint-initdb.d):
# the Citus nodes, on the internal `citus` network, connect to the coordinator without a
# password, as they do to the workers (Citus connects as the current user, and the
# objects' owner has no password: docs/citus.md, fact 22). Inserted first, because the
# image's pg_hba.conf already ends with `host all all all scram-sha-256`, which stays the
# rule for every other client (the app network).
set -eu
sed -i "1i host all all ${CITUS_NETWORK_SUBNET} trust" "$PGDATA/pg_hba.conf"
