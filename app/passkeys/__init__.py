"""Passkey step-up: approvals that a stolen Slack session cannot make.

A person sets up a passkey once, from App Home, on a page the web process serves (reached
through a single-use link made for their Slack user id). A flow with
`approval_assurance="passkey"` then counts an approval only once the approver has confirmed
that exact request on the web's page with that passkey: the WebAuthn challenge carries the
request id, the assertion must verify against a credential the keyed audit trail vouches
for, and the keyed approval event records the credential id, which the worker's proof
(app.proof) requires before it grants.

app.weblinks: the single-use links; credentials.py: registered passkeys and their keyed
events; ceremony.py: WebAuthn options and verification (py_webauthn); approval.py: the
decision a verified assertion makes; pages.py: the HTML and JSON routes.
"""
