"""Read-write production access, approved automatically for whoever is on call."""

from datetime import timedelta

from app.flows.hooks import HookDecision, HookRequest, approve
from app.flows.schema import Approvers, AwsIamGroupTarget, Flow, People

flow = Flow(
    name="oncall-readwrite",
    description="Read-write production access. Automatic for the on-call engineer; leads approve otherwise.",
    targets=(AwsIamGroupTarget(name="prod-readwrite", group_name="latchkey-prod-readwrite"),),
    requesters=People(usergroups=("S0ENGINEERS",)),
    approvers=Approvers(usergroups=("S0PLATFORM",)),
    approval_channel="C0ACCESSREQS",
    durations=(timedelta(hours=1), timedelta(hours=4)),
    max_duration=timedelta(hours=4),
    pending_timeout=timedelta(hours=1),
    reason_min_length=10,
)

# Slack user ids of the current on-call engineers. Replace with a lookup in your paging
# tool (e.g. PagerDuty's GET /oncalls with a read-only token from the environment);
# whatever it raises is caught, audited, and the request simply goes to a human.
ON_CALL: set[str] = {"U0ONCALLNOW"}


def on_request(request: HookRequest) -> HookDecision | None:
    if request.requester_id in ON_CALL:
        return approve("on call right now")
    return None  # not on call: a platform lead decides
