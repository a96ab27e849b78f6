"""`latchkey flows check --online`: ask each provider whether a flow's targets exist and
can be managed with the bot's credentials, so a typo in an account id or a missing
permission set is found before anyone requests it, not at grant time; and ask Slack
whether the bot is in every channel the flows post cards to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError

from app.flows.loader import FlowRegistry
from app.flows.schema import provider_of
from app.providers.base import ProviderError
from app.providers.registry import ProviderRegistry


@dataclass(frozen=True)
class TargetCheck:
    flow: str
    target: str
    provider: str
    problems: tuple[str, ...]
    # False when the provider offers no online check (nothing was asked).
    checked: bool = True


def verify_targets(flows: FlowRegistry, providers: ProviderRegistry) -> list[TargetCheck]:
    results = []
    for loaded in flows:
        for target in loaded.flow.targets:
            name = provider_of(target)
            results.append(_verify(loaded.flow.name, target, name, providers))
    return results


def _verify(flow: str, target: object, name: str, providers: ProviderRegistry) -> TargetCheck:
    label = getattr(target, "name", "?")
    try:
        provider = providers.get(name)
        verify = getattr(provider, "verify", None)
        if verify is None:
            return TargetCheck(flow, label, name, (), checked=False)
        problems = tuple(verify(target))
    except ProviderError as exc:
        problems = (str(exc),)
    except Exception as exc:
        # Missing credentials, an unreachable endpoint: the check could not run at all.
        problems = (f"could not check: {type(exc).__name__}: {exc}",)
    return TargetCheck(flow, label, name, problems)


@dataclass(frozen=True)
class ChannelCheck:
    channel: str
    flows: tuple[str, ...]
    problem: str | None


def channels_of(flows: FlowRegistry) -> dict[str, list[str]]:
    """Every channel a flow posts cards to (its own, its targets', its watchers') -> flows."""
    found: dict[str, list[str]] = {}
    for loaded in flows:
        flow = loaded.flow
        named = [flow.channel_for(t.name) for t in flow.targets] + list(flow.notify.channels)
        for channel in dict.fromkeys(named):
            found.setdefault(channel, []).append(flow.name)
    return found


def verify_channels(flows: FlowRegistry, slack: Any) -> list[ChannelCheck]:
    """Ask Slack about each channel: a card posted where the bot is not a member is
    refused (`not_in_channel`), and nobody would see the request."""
    results = []
    for channel, names in channels_of(flows).items():
        try:
            info = slack.conversations_info(channel=channel)["channel"]
            problem = (
                "is archived"
                if info.get("is_archived")
                else None
                if info.get("is_member")
                else "the bot is not a member: invite it (/invite @Latchkey in the channel)"
            )
        except SlackApiError as exc:
            error = exc.response.get("error")
            problem = (
                "Slack has no such channel, or the bot cannot see it (a private channel it "
                "was not invited to)"
                if error == "channel_not_found"
                else f"could not check: {error}"
            )
        except Exception as exc:
            problem = f"could not check: {type(exc).__name__}: {exc}"
        results.append(ChannelCheck(channel, tuple(names), problem))
    return results
