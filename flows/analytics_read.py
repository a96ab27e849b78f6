"""Read access to the analytics database, through the custom PostgreSQL role provider
(`provider_postgres_role.py`): any engineer, one approver from the data team."""

from datetime import timedelta

from app.flows.schema import Approvers, CustomTarget, Flow, Identity

flow = Flow(
    name="analytics-read",
    description="Read-only access to the analytics PostgreSQL database.",
    targets=(
        CustomTarget(
            name="analytics-read",
            using="postgres_role",
            settings={"role": "analytics_read"},
            description="SELECT on the analytics schema",
        ),
    ),
    approvers=Approvers(usergroups=("S0DATATEAM",)),
    approval_channel="C0DATAOPS",
    durations=(timedelta(hours=1), timedelta(hours=4)),
    max_duration=timedelta(hours=4),
    # Listed people first; everyone else through get_principal below.
    identity=Identity(per_provider={"postgres_role": {"U0ANNE": "anne"}}),
)


def get_principal(who):  # type: ignore[no-untyped-def]
    """Database roles here are the email's local part (ann@example.com -> ann). Returning
    None refuses the request in the modal, with the reason, before anyone approves it."""
    if who.email and who.email.endswith("@example.com"):
        return who.email.split("@")[0].lower()
    return None
