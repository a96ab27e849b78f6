"""The web's HTTP API for service clients (issue 18.4): a pipeline asks for access with a
bearer token and polls for the decision, which people make in Slack.

    POST /api/requests        {"flow", "target", "duration" | "minutes", "reason"} -> 202
    GET  /api/requests/{id}   status, end, failure; credentials while live (login targets)

`http` is the WSGI edge (method, size, token, JSON); `requests` is what the endpoints do;
`client` is `latchkey request`, the pipeline's side. docs/api.md is the reference.
"""
