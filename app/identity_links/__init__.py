"""Verified identity links: a person links their Slack user to their identity at the
company's OpenID Connect provider once (App Home → "Link your identity" → the IdP's login
→ the web's callback), and flows with `Identity(verified=True)` grant to that identity's
email, never to whatever the Slack profile says. A Slack admin editing a profile's email,
or an IdP sync gone wrong, no longer points a grant at someone else.

oidc.py: the code flow and the ID token's checks (Authlib, joserfc); store.py: the links
and their keyed events; pages.py: the web's routes.
"""
