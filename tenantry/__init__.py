"""The `tenantry` command: mounts the sub-commands that live beside what they drive
(db/, db/local/, api/); it holds no command of its own."""
