"""The thin Falcon API (issue: identity, access and the API). Not built yet."""
