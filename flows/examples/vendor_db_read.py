"""A vendor's analyst reads the warehouse for a few hours: a PostgreSQL login made for the
grant (`lk_…`, its password shown only to them), a member of `warehouse_read` only, and
dropped with its sessions at the end. No standing login for the vendor, ever.

Copy into your flows folder; needs LATCHKEY_POSTGRES_LOGIN_URL and LATCHKEY_CREDENTIALS_KEY
(docs/providers.md, "Ephemeral database logins")."""

from datetime import timedelta

from app.flows.schema import Approvers, Flow, People, PostgresLoginTarget

flow = Flow(
    name="vendor-db-read",
    description="Read-only warehouse access for the vendor's analysts, as a login of its own.",
    targets=(
        PostgresLoginTarget(
            name="warehouse-read",
            database="warehouse",
            roles=("warehouse_read",),
            description="SELECT on the warehouse's reporting schema",
        ),
    ),
    # The vendor's people are Slack guests of one shared channel's organisation: they may ask.
    requesters=People(usergroups=("S0VENDORACME",)),
    allow_guests=True,
    approvers=Approvers(usergroups=("S0DATATEAM",)),
    approval_channel="C0DATAOPS",
    durations=(timedelta(hours=1), timedelta(hours=4), timedelta(hours=8)),
    max_duration=timedelta(hours=8),
    reason_min_length=15,
)
