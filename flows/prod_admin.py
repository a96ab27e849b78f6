"""Administrator access to production AWS: short, approved by security."""

from datetime import timedelta

from app.flows.schema import Approvers, AwsIamGroupTarget, Flow

flow = Flow(
    name="prod-admin",
    description="Administrator access to the production AWS account. Use sparingly.",
    targets=(AwsIamGroupTarget(name="prod-admin", group_name="latchkey-prod-admin"),),
    approvers=Approvers(usergroups=("S0SECURITY",)),
    approval_channel="C0SECURITYOPS",
    durations=(timedelta(minutes=15), timedelta(hours=1)),
    max_duration=timedelta(hours=1),
    reason_required=True,
)
