"""The one break-glass DBA account, lent to one engineer at a time: its password is rotated
when it goes out (only the holder sees the new one) and again when it comes back, so what
they saw stops working. A second engineer approved while it is out waits in the queue and
is told who has it and until when.

Copy into your flows folder; needs LATCHKEY_POSTGRES_LOGIN_URL and LATCHKEY_CREDENTIALS_KEY
(docs/providers.md, "Checked-out shared accounts")."""

from datetime import timedelta

from app.flows.schema import Approvers, Flow, People, PostgresAccountTarget

flow = Flow(
    name="dba-breakglass",
    description="The production DBA account, one holder at a time, rotated after each use.",
    targets=(
        PostgresAccountTarget(
            name="prod-dba",
            account="dba_breakglass",
            database="postgres",
            when_checked_out="queue",
            description="CREATEDB, CREATEROLE and pg_read_all_data on the production cluster",
        ),
    ),
    requesters=People(usergroups=("S0DBAS", "S0ONCALL")),
    approvers=Approvers(usergroups=("S0DBLEADS",)),
    approval_channel="C0DBOPS",
    durations=(timedelta(minutes=30), timedelta(hours=1), timedelta(hours=2)),
    max_duration=timedelta(hours=2),
    reason_min_length=20,
)
