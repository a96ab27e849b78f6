"""Read-only access to production AWS, approved by the platform leads."""

from datetime import timedelta

from app.flows.schema import Approvers, AwsIamGroupTarget, Flow

flow = Flow(
    name="prod-readonly",
    description="Read-only access to the production AWS account.",
    targets=(
        AwsIamGroupTarget(name="prod-readonly", group_name="latchkey-prod-readonly"),
        # The database read role is the DBAs' to approve, in their own channel.
        AwsIamGroupTarget(
            name="rds-readonly", group_name="latchkey-rds-readonly", approval_channel="C0DBAS"
        ),
    ),
    # Replace with your approvers' Slack user ids (profile → ⋮ → Copy member ID)
    # and/or a user group id (S…).
    approvers=Approvers(users=("U0PLATFORMLEAD",), usergroups=("S0PLATFORM",)),
    approval_channel="C0ACCESSREQS",
    durations=(timedelta(minutes=30), timedelta(hours=1), timedelta(hours=4)),
    max_duration=timedelta(hours=4),
    reason_required=True,
)
