"""What every target model shares: strict, immutable, and where its requests are decided."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, field_validator

SLACK_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,}$")


class Strict(BaseModel):
    """Unknown fields are errors and models are immutable: a typo fails the check."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Routed(Strict):
    """What every target may say about where its requests are decided."""

    # This target's cards go to this channel instead of the flow's approval_channel
    # (production databases to the DBAs' channel, say).
    approval_channel: str | None = None

    @field_validator("approval_channel")
    @classmethod
    def _channel_id(cls, value: str | None) -> str | None:
        if value is not None and not SLACK_CHANNEL.match(value):
            raise ValueError(f"{value!r} is not a Slack channel id (C… or G…)")
        return value


def _matching(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"{value!r} is not {what}")
    return value
