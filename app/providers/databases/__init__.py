"""Providers that make database logins: ephemeral ones per grant (issue 18)."""
