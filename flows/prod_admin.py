"""Administrator access to production AWS: short, and a two-person rule."""

from datetime import timedelta

from app.flows.schema import Approvers, AwsIamGroupTarget, Flow, Watchers

flow = Flow(
    name="prod-admin",
    description="Administrator access to the production AWS account. Use sparingly.",
    targets=(AwsIamGroupTarget(name="prod-admin", group_name="latchkey-prod-admin"),),
    approvers=Approvers(usergroups=("S0SECURITY",)),
    # Two different people from security must approve; the requester never counts.
    approvals_required=2,
    approval_channel="C0SECURITYOPS",
    # Security engineers get each card in a DM too (with working buttons), and the
    # security feed channel sees every card, without buttons.
    approver_dms=True,
    notify=Watchers(channels=("C0SECURITYFEED",)),
    durations=(timedelta(minutes=15), timedelta(hours=1)),
    max_duration=timedelta(hours=1),
    pending_timeout=timedelta(hours=2),
    reason_required=True,
    reason_pattern=r"\b[A-Z][A-Z0-9]+-\d+\b",
    reason_hint="a ticket id such as OPS-123",
)
