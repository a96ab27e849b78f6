"""Providers that make database logins: ephemeral ones per grant (issue 18)."""

# Providers whose grants carry credentials the holder is shown ("Show credentials"): each
# has `credentials(spec) -> {"login", "password", "connection"} | None`.
WITH_CREDENTIALS = frozenset({"postgres_login", "postgres_account", "mariadb_login"})
