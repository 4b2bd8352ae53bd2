"""The thin Falcon API: authenticate, open one tenant transaction, call one api.*
function, map the result or the SQLSTATE to HTTP (see api/README.md)."""
