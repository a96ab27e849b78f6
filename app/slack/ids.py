"""The wire contract with Slack: every callback_id, block_id and action_id in one place."""

COMMAND = "/access"

# The request modal.
REQUEST_VIEW = "latchkey.request"
FLOW_BLOCK, FLOW_ACTION = "flow", "flow_select"
TARGET_BLOCK, TARGET_ACTION = "target", "target_select"
DURATION_BLOCK, DURATION_ACTION = "duration", "duration_select"
REASON_BLOCK, REASON_ACTION = "reason", "reason_input"
# "For": someone else the request is for (flows with on_behalf, approvers and admins only).
FOR_BLOCK, FOR_ACTION = "for", "for_user"

# The approval card in the flow's channel.
DECISION_BLOCK = "decision"
APPROVE_ACTION = "latchkey.approve"
APPROVE_FOR_ACTION = "latchkey.approve_for"
DENY_ACTION = "latchkey.deny"

# The requester's DM.
CANCEL_ACTION = "latchkey.cancel"

# The deny modal.
DENY_VIEW = "latchkey.deny"
DENY_REASON_BLOCK, DENY_REASON_ACTION = "deny_reason", "deny_reason_input"

# Break-glass: the modal's checkbox, the confirm step, the review on the card.
BREAK_GLASS_BLOCK, BREAK_GLASS_ACTION = "break_glass", "break_glass_check"
BREAK_GLASS_VIEW = "latchkey.break_glass_confirm"
REVIEW_ACK_ACTION = "latchkey.review_ack"
REVIEW_FLAG_ACTION = "latchkey.review_flag"

# Living with a grant: the requester's DM and App Home.
EXTEND_ACTION = "latchkey.extend"
RELEASE_ACTION = "latchkey.release"
REQUEST_AGAIN_ACTION = "latchkey.request_again"
# The login and password of an ephemeral account, in a modal only the holder sees.
SHOW_CREDENTIALS_ACTION = "latchkey.show_credentials"
EXTEND_VIEW = "latchkey.extend"
EXTEND_DURATION_BLOCK, EXTEND_DURATION_ACTION = "extend_duration", "extend_duration_select"
EXTEND_REASON_BLOCK, EXTEND_REASON_ACTION = "extend_reason", "extend_reason_input"

# Revoking a live grant from its card in the channel.
GRANT_BLOCK = "grant"
REVOKE_ACTION = "latchkey.revoke"
REVOKE_VIEW = "latchkey.revoke"
REVOKE_REASON_BLOCK, REVOKE_REASON_ACTION = "revoke_reason", "revoke_reason_input"

# Passkeys (app/passkeys): App Home's "Set up a passkey", and the modal's link button
# (Slack sends a click on a URL button too; it is acknowledged and nothing else).
PASSKEY_SETUP_ACTION = "latchkey.passkey_setup"
PASSKEY_OPEN_ACTION = "latchkey.passkey_open"

# Identity links (app/identity_links): App Home's "Link your identity" and "Unlink", and the
# link button of its modal and of the DM a refused form sends (acknowledged, nothing else).
IDENTITY_LINK_ACTION = "latchkey.identity_link"
IDENTITY_UNLINK_ACTION = "latchkey.identity_unlink"
IDENTITY_OPEN_ACTION = "latchkey.identity_open"
