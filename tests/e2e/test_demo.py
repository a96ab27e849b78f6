"""`latchkey demo` end to end: it builds its own stack, so it takes no `stack` fixture."""

from __future__ import annotations

import io
import re

from app.demo import run_demo
from tests.factories import APPROVED_BY_CLICK


def test_demo_tells_the_whole_story(redis_url: str) -> None:
    out = io.StringIO()
    code = run_demo(seconds=4, redis_url=redis_url, out=out)
    transcript = out.getvalue()
    assert code == 0, transcript

    moments = [
        "── sam types /access",
        "== Request access ==",
        "[ Cancel ]  [ Request ]",
        "#access-approvals (card posted by Latchkey)",
        "Investigating the checkout latency alert INC-4711",
        "[ Approve ]  [ Deny ]",
        "was sent for approval",
        "── ann clicks Approve",
        "Approved by @ann",
        "You now have",
        "IAM: sam@example.com is in latchkey-demo-admins: yes",
        "expired at",
        "Access expired",
        "IAM: sam@example.com is in latchkey-demo-admins: no",
        "chain intact",
    ]
    # Each moment must come after the previous one: the transcript tells the story in order.
    at = 0
    for moment in moments:
        found = transcript.find(moment, at)
        assert found >= 0, f"{moment!r} missing, or before an earlier moment, in:\n{transcript}"
        at = found + len(moment)

    # sam reads the end of the grant in sam's own timezone.
    assert re.search(r"You now have .* until \W*\d\d:\d\d Europe/Paris", transcript), transcript

    audit = transcript[transcript.index("audit trail") :]
    events = [line.split()[2] for line in audit.splitlines() if line[:3].strip().isdigit()]
    # A short grant may get its expiry notice (at least a minute ahead, at most half of it).
    events = [e for e in events if e != "expiry_notice_sent"]
    assert events == [*APPROVED_BY_CLICK, "granting", "granted", "revoking", "expired"], audit
    assert "<@" not in transcript, "mentions must be shown as @name"
