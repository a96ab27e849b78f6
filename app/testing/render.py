"""Turn what the bot sent to Slack into the text a person would see (for `latchkey demo`).

Slack markup is shown as Slack shows it: mentions as @name, links as "label (url)", dates
as their fallback, and `&lt;` `&gt;` `&amp;` unescaped. Escaped user text therefore
renders as the literal characters the user typed, which is how to spot that it stayed
inert.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

Block = dict[str, Any]
Names = Mapping[str, str]

_TOKEN = re.compile(r"<([^<>\n]+)>")
_SPECIAL = {"here": "@here", "channel": "@channel", "everyone": "@everyone"}
RULE = "-" * 40


def render_mrkdwn(text: str, names: Names | None = None) -> str:
    """Resolve Slack's `<...>` tokens, then unescape the three entities Slack escapes."""
    names = names or {}

    def token(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            return "@" + names.get(target[1:], label or target[1:])
        if target.startswith("#"):
            return "#" + names.get(target[1:], label or target[1:])
        if target.startswith("!"):
            keyword, _, argument = target[1:].partition("^")
            if keyword == "subteam":
                return label or "@" + names.get(argument, argument)
            return label or _SPECIAL.get(keyword, f"<{inner}>")
        return f"{label} ({target})" if label else target

    resolved = _TOKEN.sub(token, text)
    # &amp; last, so "&amp;lt;" (a user who typed "&lt;") shows as "&lt;".
    return resolved.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _text(obj: Any, names: Names) -> str:
    if not isinstance(obj, dict):
        return "" if obj is None else str(obj)
    if obj.get("type") == "mrkdwn":
        return render_mrkdwn(str(obj.get("text", "")), names)
    return str(obj.get("text", ""))  # plain_text is shown exactly as sent


def _option(option: Any, names: Names) -> str:
    return _text(option.get("text"), names) if isinstance(option, dict) else ""


def render_element(element: Block, names: Names | None = None) -> str:
    """One interactive or context element on one line, e.g. `[ Approve ]`."""
    names = names or {}
    kind = element.get("type", "")
    placeholder = _text(element.get("placeholder"), names)
    if kind == "button":
        return f"[ {_text(element.get('text'), names)} ]"
    if kind in ("mrkdwn", "plain_text"):
        return _text(element, names)
    if kind == "image":
        return f"[{element.get('alt_text', 'image')}]"
    if kind == "overflow":
        return "[ ... ]"
    if kind == "plain_text_input":
        shown = element.get("initial_value") or placeholder
        return f"[ {shown} ]" + (" (multi-line)" if element.get("multiline") else "")
    if kind.endswith("select"):
        chosen = element.get("initial_option")
        shown = _option(chosen, names) if chosen else placeholder or "Select"
        for key in ("initial_user", "initial_conversation", "initial_channel"):
            if element.get(key):
                shown = "@" + names.get(element[key], element[key])
        return f"[ {shown} v ]"
    if kind in ("datepicker", "timepicker", "datetimepicker"):
        shown = element.get("initial_date") or element.get("initial_time") or placeholder
        return f"[ {shown or kind} ]"
    if kind in ("radio_buttons", "checkboxes"):
        return "  ".join(_choice(element, option, names) for option in element.get("options", []))
    return f"[{kind}]"


def _choice(element: Block, option: Block, names: Names) -> str:
    chosen = element.get("initial_options") or [element.get("initial_option")]
    marks = ("(o)", "( )") if element.get("type") == "radio_buttons" else ("[x]", "[ ]")
    picked = option.get("value") in {c.get("value") for c in chosen if isinstance(c, dict)}
    return f"{marks[0] if picked else marks[1]} {_option(option, names)}"


def _rich_text(node: Any, names: Names) -> str:
    # rich_text nests sections/lists/quotes; only the leaves carry text.
    if not isinstance(node, dict):
        return ""
    kind = node.get("type")
    if kind == "text":
        return str(node.get("text", ""))
    if kind == "user":
        return "@" + names.get(node.get("user_id", ""), node.get("user_id", ""))
    if kind == "link":
        return str(node.get("text") or node.get("url", ""))
    if kind == "emoji":
        return f":{node.get('name', '')}:"
    parts = [_rich_text(child, names) for child in node.get("elements", [])]
    return ("\n" if kind in ("rich_text", "rich_text_list") else "").join(parts)


def render_block(block: Block, names: Names | None = None) -> list[str]:
    """The lines one block shows."""
    names = names or {}
    kind = block.get("type")
    if kind == "header":
        title = _text(block.get("text"), names)
        return [title, "=" * len(title)]
    if kind == "divider":
        return [RULE]
    if kind == "section":
        lines = _text(block.get("text"), names).splitlines() if block.get("text") else []
        for item in block.get("fields") or []:
            lines += _text(item, names).splitlines()
        accessory = block.get("accessory")
        if isinstance(accessory, dict):
            shown = render_element(accessory, names)
            lines = [f"{lines[0]}   {shown}", *lines[1:]] if lines else [shown]
        return lines
    if kind == "context":
        return ["  ".join(render_element(e, names) for e in block.get("elements", []))]
    if kind == "actions":
        return ["  ".join(render_element(e, names) for e in block.get("elements", []))]
    if kind == "input":
        label = _text(block.get("label"), names) + (" (optional)" if block.get("optional") else "")
        element = block.get("element") or {}
        lines = [label, "  " + render_element(element, names)]
        if element.get("type", "").endswith("select") and element.get("options"):
            lines += [f"    - {_option(option, names)}" for option in element["options"]]
        if block.get("hint"):
            lines.append("  " + _text(block["hint"], names))
        return lines
    if kind == "image":
        return [f"[image: {block.get('alt_text', '')}]"]
    if kind == "rich_text":
        return _rich_text(block, names).splitlines()
    return [f"[{kind} block]"]


def render_blocks(
    blocks: list[Block] | None, text: str | None = None, *, names: Names | None = None
) -> str:
    """A message as Slack shows it; `text` is what shows when there are no blocks."""
    if not blocks:
        return render_mrkdwn(text or "", names)
    return "\n".join(line for block in blocks for line in render_block(block, names))


def render_view(view: Block, *, names: Names | None = None) -> str:
    """A modal (or Home tab) as a box: title, blocks, then its buttons."""
    if view.get("type") == "home":
        return "== Home ==\n" + render_blocks(view.get("blocks"), names=names)
    title = _text(view.get("title"), names or {})
    body = render_blocks(view.get("blocks"), names=names)
    buttons = [f"[ {_text(view.get('close'), {}) or 'Cancel'} ]"]
    if view.get("submit"):
        buttons.append(f"[ {_text(view['submit'], {})} ]")
    return "\n".join([f"== {title} ==", body, RULE, "  ".join(buttons)])
