"""A CI pipeline's migration window: the deploy job asks over the API (`latchkey request`,
a service client's token), a DBA approves the card in Slack, and the job gets a PostgreSQL
login of its own, a member of `app_migrator` (DDL on the application's schema), for the
window only. Its password comes back in the API's answer, never in the job's logs
(`latchkey request` prints it to stdout as JSON for the job to read).

Copy into your flows folder; make the client with
`latchkey clients create ci-deploy --flows ci-migrations --principal ci-deploy --by <you>`;
needs LATCHKEY_POSTGRES_LOGIN_URL and LATCHKEY_CREDENTIALS_KEY (docs/api.md)."""

from datetime import timedelta

from app.flows.schema import Approvers, Flow, People, PostgresLoginTarget

flow = Flow(
    name="ci-migrations",
    description="Schema migrations on the production database, asked for by the deploy job.",
    targets=(
        PostgresLoginTarget(
            name="app-migrate",
            database="app",
            roles=("app_migrator",),
            description="DDL on the app schema, for one deploy's migration step",
        ),
    ),
    # The pipeline only: no person requests this flow (they have dba-breakglass).
    requesters=People(users=()),
    service_clients=("ci-deploy",),
    approvers=Approvers(usergroups=("S0DBAS",)),
    approval_channel="C0DBCHANGES",
    durations=(timedelta(minutes=15), timedelta(minutes=30)),
    max_duration=timedelta(minutes=30),
    reason_pattern=r"deploy [0-9a-f]{7,}",
    reason_hint="the commit being deployed (deploy <sha>)",
)
