"""Modals: the /access request form and the deny form. Pure functions returning dicts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from app.flows.schema import Flow, format_duration
from app.slack import ids
from app.slack.blocks.text import escape, mrkdwn, plain


@dataclass(frozen=True)
class Prefill:
    """An earlier request's choices, offered again."""

    target: str
    duration: timedelta
    reason: str


def _option(text: str, value: str) -> dict[str, Any]:
    return {"text": plain(text[:75]), "value": value}


def _for_block() -> dict[str, Any]:
    return {
        "type": "input",
        "block_id": ids.FOR_BLOCK,
        "optional": True,
        "label": plain("For (someone else)"),
        "hint": plain("Leave empty to request for yourself. They are told and can cancel it."),
        "element": {
            "type": "users_select",
            "action_id": ids.FOR_ACTION,
            "placeholder": plain("Who needs this access"),
        },
    }


def request_modal(
    flows: list[Flow],
    selected: Flow | None = None,
    again: Prefill | None = None,
    notice: str | None = None,
    for_others: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The /access form for the flows this person may request.

    Picking a flow re-renders the form (dispatch_action) with that flow's targets and
    durations, so every choice shown is one the flow allows. `again` prefills it from an
    earlier request ("Request again"), keeping only what the flow still offers. `notice`
    (plain words, escaped here) says why the form did not do what was asked. Flows named
    in `for_others` (on_behalf, and this person an approver or admin) get a "For" picker.
    """
    if selected is not None and selected not in flows:
        selected = None  # only ever a flow this person may request
    if not flows:
        return {
            "type": "modal",
            "callback_id": ids.REQUEST_VIEW,
            "title": plain("Request access"),
            "close": plain("Close"),
            "blocks": [
                {"type": "section", "text": mrkdwn("There is nothing you may request yet.")}
            ],
        }
    flow = selected or flows[0]
    target = flow.target(again.target) if again else None
    if target is None and len(flow.targets) == 1:
        target = flow.targets[0]
    duration = flow.durations[0]
    if again is not None:
        duration = max((d for d in flow.durations if d <= again.duration), default=duration)
    flow_options = [_option(f.name, f.name) for f in flows]
    warning = (
        [{"type": "context", "elements": [mrkdwn(f":no_entry: {escape(notice)}")]}]
        if notice
        else []
    )
    blocks: list[dict[str, Any]] = [
        *warning,
        {
            "type": "input",
            "block_id": ids.FLOW_BLOCK,
            "dispatch_action": True,
            "label": plain("Flow"),
            "element": {
                "type": "static_select",
                "action_id": ids.FLOW_ACTION,
                "options": flow_options,
                "initial_option": _option(flow.name, flow.name),
            },
        },
        {"type": "context", "elements": [mrkdwn(escape(flow.description))]},
        *([_for_block()] if flow.name in for_others else []),
        {
            "type": "input",
            "block_id": ids.TARGET_BLOCK,
            "label": plain("Access to"),
            "element": {
                "type": "static_select",
                "action_id": ids.TARGET_ACTION,
                "placeholder": plain("Choose what you need"),
                "options": [_option(t.name, t.name) for t in flow.targets],
                **({"initial_option": _option(target.name, target.name)} if target else {}),
            },
        },
        {
            "type": "input",
            "block_id": ids.DURATION_BLOCK,
            "label": plain("For how long"),
            "element": {
                "type": "static_select",
                "action_id": ids.DURATION_ACTION,
                "options": [
                    _option(format_duration(d), str(int(d.total_seconds()))) for d in flow.durations
                ],
                "initial_option": _option(
                    format_duration(duration), str(int(duration.total_seconds()))
                ),
            },
        },
        {
            "type": "input",
            "block_id": ids.REASON_BLOCK,
            "optional": not flow.reason_required,
            "label": plain("Why"),
            "element": {
                "type": "plain_text_input",
                "action_id": ids.REASON_ACTION,
                "multiline": True,
                "max_length": 2000,
                "placeholder": plain("What will you do with this access?"),
                **({"initial_value": again.reason} if again and again.reason else {}),
            },
        },
    ]
    if flow.break_glass:
        blocks.append(
            {
                "type": "input",
                "block_id": ids.BREAK_GLASS_BLOCK,
                "optional": True,
                "label": plain("Emergency"),
                "element": {
                    "type": "checkboxes",
                    "action_id": ids.BREAK_GLASS_ACTION,
                    "options": [
                        {
                            "text": plain("Break glass: activate now, without approval"),
                            "description": plain(
                                "The channel is alerted and an approver reviews it afterwards."
                            ),
                            "value": "break_glass",
                        }
                    ],
                },
            }
        )
    return {
        "type": "modal",
        "callback_id": ids.REQUEST_VIEW,
        "private_metadata": json.dumps({"flow": flow.name}),
        "title": plain("Request access"),
        "submit": plain("Request"),
        "close": plain("Cancel"),
        "blocks": blocks,
    }


def deny_modal(
    request_id: str, summary: str, channel: str | None, message_ts: str | None
) -> dict[str, Any]:
    """Asks the approver for an optional reason; the ids ride in private_metadata."""
    return {
        "type": "modal",
        "callback_id": ids.DENY_VIEW,
        "private_metadata": json.dumps(
            {"request_id": request_id, "channel": channel, "ts": message_ts}
        ),
        "title": plain("Deny request"),
        "submit": plain("Deny"),
        "close": plain("Cancel"),
        "blocks": [
            {"type": "section", "text": mrkdwn(summary)},
            {
                "type": "input",
                "block_id": ids.DENY_REASON_BLOCK,
                "optional": True,
                "label": plain("Reason (shown to the requester)"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": ids.DENY_REASON_ACTION,
                    "multiline": True,
                    "max_length": 1000,
                },
            },
        ],
    }


def break_glass_confirm(draft_id: str, summary: str) -> dict[str, Any]:
    """The confirm step: what the requester is about to do, said plainly.

    What they asked for stays on the server (a RequestDraft); the view carries its id only.
    """
    return {
        "type": "modal",
        "callback_id": ids.BREAK_GLASS_VIEW,
        "private_metadata": json.dumps({"draft_id": draft_id}),
        "title": plain("Break glass?"),
        "submit": plain("Activate now"),
        "close": plain("Back"),
        "blocks": [
            {
                "type": "section",
                "text": mrkdwn(
                    f":rotating_light: {summary}\n\nAccess starts *now*, without approval. The approval "
                    "channel is alerted and an approver reviews this use afterwards. Everything is audited."
                ),
            }
        ],
    }


def break_glass_passkey_view(url: str, has_passkey: bool) -> dict[str, Any]:
    """After "Activate now" in a flow whose break-glass needs the requester's passkey: the
    link to confirm it (or to set one up first). Meanwhile the request waits for approvers."""
    if has_passkey:
        said = (
            ":key: This flow needs your passkey to break glass. Confirm on Latchkey's page: "
            "access starts once you do. The link works once, only for you, for a few minutes. "
            "Meanwhile your request also went to the approvers."
        )
        label = "Confirm with passkey"
    else:
        said = (
            ":key: This flow needs your passkey to break glass, and you have none set up yet. "
            "Set one up on Latchkey's page, then break glass again. Meanwhile your request "
            "went to the approvers."
        )
        label = "Set up a passkey"
    return {
        "type": "modal",
        "title": plain("Confirm break-glass"),
        "close": plain("Close"),
        "blocks": [
            {"type": "section", "text": mrkdwn(said)},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": ids.PASSKEY_OPEN_ACTION,
                        "text": plain(label),
                        "url": url,
                        "style": "danger",
                    }
                ],
            },
        ],
    }


def problem_view(title: str, problem: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "title": plain(title[:24]),
        "close": plain("Close"),
        "blocks": [{"type": "section", "text": mrkdwn(f":no_entry: {escape(problem)}")}],
    }


def _reason_input(block: str, action: str, label: str, optional: bool) -> dict[str, Any]:
    return {
        "type": "input",
        "block_id": block,
        "optional": optional,
        "label": plain(label),
        "element": {
            "type": "plain_text_input",
            "action_id": action,
            "multiline": True,
            "max_length": 2000,
        },
    }


def extend_modal(
    request_id: str, summary: str, choices: list[timedelta], reason_optional: bool
) -> dict[str, Any]:
    """How much longer, and why; only durations within the flow's limits are offered."""
    return {
        "type": "modal",
        "callback_id": ids.EXTEND_VIEW,
        "private_metadata": json.dumps({"request_id": request_id}),
        "title": plain("Extend access"),
        "submit": plain("Extend"),
        "close": plain("Cancel"),
        "blocks": [
            {"type": "section", "text": mrkdwn(summary)},
            {
                "type": "input",
                "block_id": ids.EXTEND_DURATION_BLOCK,
                "label": plain("How much longer"),
                "element": {
                    "type": "static_select",
                    "action_id": ids.EXTEND_DURATION_ACTION,
                    "options": [
                        _option(f"{format_duration(d)} more", str(int(d.total_seconds())))
                        for d in choices
                    ],
                    "initial_option": _option(
                        f"{format_duration(choices[0])} more", str(int(choices[0].total_seconds()))
                    ),
                },
            },
            _reason_input(
                ids.EXTEND_REASON_BLOCK, ids.EXTEND_REASON_ACTION, "Why", reason_optional
            ),
        ],
    }


def revoke_modal(request_id: str, summary: str) -> dict[str, Any]:
    """An approver takes a live grant away; the reason is required and shown to the holder."""
    return {
        "type": "modal",
        "callback_id": ids.REVOKE_VIEW,
        "private_metadata": json.dumps({"request_id": request_id}),
        "title": plain("Revoke access"),
        "submit": plain("Revoke now"),
        "close": plain("Cancel"),
        "blocks": [
            {"type": "section", "text": mrkdwn(summary)},
            _reason_input(
                ids.REVOKE_REASON_BLOCK,
                ids.REVOKE_REASON_ACTION,
                "Reason (shown to the holder and in the channel)",
                False,
            ),
        ],
    }
