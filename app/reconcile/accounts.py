"""The Slack accounts of people holding access, asked afresh on each pass.

A deactivation normally reaches us as Slack's user_change event and ends access at once
(app.withdrawal). An event the web never received (down longer than Slack retries, about
five minutes) would leave a deactivated person's grant to run to its end; this catches it
within LATCHKEY_ACCOUNT_RECHECK_SECONDS (plus a pass). One users.info per holder per that
period (a Redis key marks who was asked), at most the pass budget of them per pass.
"""

from __future__ import annotations

import contextlib
import logging

from redis.exceptions import RedisError
from sqlalchemy import select

from app.clients import is_client
from app.models import AccessRequest, RequestStatus
from app.reconcile.checks import Tally
from app.runtime import Runtime
from app.withdrawal import withdraw_access, withdraw_client_access

log = logging.getLogger(__name__)
ASKED = "latchkey:reconcile:account-asked:{}"


def check_holders(rt: Runtime, tally: Tally) -> None:
    """Ask Slack about each person with live access; withdraw it where the account may no
    longer take part."""
    with rt.db.session() as session:
        holders = sorted(
            set(
                session.execute(
                    select(AccessRequest.requester_id).where(
                        AccessRequest.status == RequestStatus.ACTIVE  # type: ignore[arg-type]
                    )
                ).scalars()
            )
        )
    # Service clients have no Slack account: their keyed record and scope are asked of
    # the DB on every pass (a revoked client's grants end here).
    for client in [h for h in holders if is_client(h)]:
        tally.access_withdrawn += len(withdraw_client_access(rt, client)["revoked"])
    holders = [h for h in holders if not is_client(h)]
    if not holders:
        return
    period = max(1, int(rt.settings.account_recheck_seconds))
    for user_id in holders:
        if tally.accounts_checked >= rt.settings.reconcile_budget:
            return
        try:
            # Only those not asked about within the period: Slack's users.info is rate
            # limited, and the change event is the fast path anyway.
            if not rt.redis.set(ASKED.format(user_id), 1, nx=True, ex=period):
                continue
        except RedisError:
            return  # the pass's lock needs Redis too; the next pass asks
        try:
            account = rt.directory.user(user_id, fresh=True).account
        except Exception as exc:  # Slack unreachable or rate-limited: the next pass asks
            # Not a drift error: the grant's own checks still run; the next pass asks again.
            log.warning("reconcile: could not ask Slack about %s (%s)", user_id, exc)
            tally.accounts_unanswered += 1
            with contextlib.suppress(RedisError):
                rt.redis.delete(ASKED.format(user_id))  # not asked after all
            return
        tally.accounts_checked += 1
        if account is not None:
            done = withdraw_access(rt, account)
            tally.access_withdrawn += len(done["revoked"])
            if done["revoked"]:
                log.warning(
                    "reconcile: %s's Slack account may no longer hold access; %d grants ended",
                    user_id,
                    len(done["revoked"]),
                )
