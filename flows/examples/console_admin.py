"""The vendor console's one admin login, lent to one support engineer at a time through the
custom provider `provider_panel_account.py` (copy both into your flows folder). Its password
is rotated at each check-out and check-in; a second engineer waits in the queue.

Needs LATCHKEY_PANEL_URL, LATCHKEY_PANEL_TOKEN and LATCHKEY_CREDENTIALS_KEY."""

from datetime import timedelta

from app.flows.schema import Approvers, CustomTarget, Flow, People

flow = Flow(
    name="console-admin",
    description="The vendor console's admin login, one holder at a time.",
    targets=(
        CustomTarget(
            name="console-admin",
            using="panel_account",
            settings={"account": "admin"},
            checkout="queue",
            description="Full admin of the vendor console",
        ),
    ),
    requesters=People(usergroups=("S0SUPPORT",)),
    approvers=Approvers(usergroups=("S0SUPPORTLEADS",)),
    approval_channel="C0SUPPORTOPS",
    durations=(timedelta(minutes=30), timedelta(hours=1)),
    max_duration=timedelta(hours=1),
)
