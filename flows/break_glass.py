"""Emergency production access: self-activated, loudly announced, reviewed afterwards."""

from datetime import timedelta

from app.flows.schema import Approvers, AwsIamGroupTarget, Flow, People

flow = Flow(
    name="break-glass",
    description="Emergency admin access when nobody can approve in time. Everyone sees it; security reviews it.",
    targets=(AwsIamGroupTarget(name="prod-admin", group_name="latchkey-prod-admin"),),
    requesters=People(usergroups=("S0ONCALL",)),
    # Normal requests of this flow still need security; break-glass skips the wait.
    approvers=Approvers(usergroups=("S0SECURITY",)),
    approval_channel="C0SECURITYOPS",
    break_glass=True,
    durations=(timedelta(minutes=30), timedelta(hours=1)),
    max_duration=timedelta(hours=1),
    pending_timeout=timedelta(minutes=30),
    reason_min_length=20,
)
