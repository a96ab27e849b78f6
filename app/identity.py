"""Who a Slack user is at a provider, decided before a request exists.

A request whose requester has no principal at the target's provider is refused in the
modal with the reason, rather than approved and then failing at grant time.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.flows.hooks import call_hook
from app.flows.loader import LoadedFlow
from app.flows.schema import provider_of
from app.providers.registry import ProviderRegistry

PRINCIPAL_HOOK = "get_principal"
# Said in the form (with a link button in a DM) to someone who has not linked their identity.
NOT_LINKED = (
    "This flow grants only to a verified identity: link yours first (App Home → "
    "Link your identity; Latchkey sent you the button)."
)


@dataclass(frozen=True)
class PrincipalQuery:
    """What a flow's `get_principal` hook is asked: who, for which provider and target."""

    user_id: str
    email: str | None
    provider: str
    target: str


@dataclass(frozen=True)
class Principal:
    """The principal (None when there is none) and, if so, why, in the requester's words."""

    value: str | None
    problem: str | None = None


def principal_for(
    providers: ProviderRegistry,
    loaded: LoadedFlow,
    target_name: str,
    *,
    user_id: str,
    email: str | None,
) -> Principal:
    flow = loaded.flow
    target = flow.target(target_name)
    if target is None:
        return Principal(None, f"{flow.name} has no target {target_name!r}")
    provider = provider_of(target)
    value = _mapped(loaded, provider, target_name, user_id=user_id, email=email)
    if isinstance(value, Principal):
        return value
    problem = providers.principal_problem(provider, value) or domain_problem(
        flow.principal_domains, value
    )
    if problem:
        return Principal(
            None, f"Your identity for {target_name} ({value!r}) cannot be used: {problem}."
        )
    return Principal(value)


def domain_problem(domains: tuple[str, ...], principal: str) -> str | None:
    """Why a principal is outside the flow's `principal_domains` (None: inside, or no rule).

    A GCP member (`user:…`, `group:…`, `serviceAccount:…`) is judged by its email.
    """
    if not domains:
        return None
    email = principal.partition(":")[2] if ":" in principal else principal
    domain = email.rpartition("@")[2].lower() if "@" in email else ""
    if domain in domains:
        return None
    allowed = ", ".join(domains)
    if not domain:
        return f"this flow grants only to emails in {allowed}"
    return f"{domain} is not among the domains this flow grants to ({allowed})"


def _mapped(
    loaded: LoadedFlow, provider: str, target: str, *, user_id: str, email: str | None
) -> str | Principal:
    identity = loaded.flow.identity
    for mapping in (identity.per_provider.get(provider, {}), identity.principals):
        for key in (user_id, email):
            if key and key in mapping:
                return mapping[key]
    if PRINCIPAL_HOOK in loaded.hooks:
        result = call_hook(loaded, PRINCIPAL_HOOK, PrincipalQuery(user_id, email, provider, target))
        if result.error is not None:
            return Principal(None, f"The flow's {PRINCIPAL_HOOK} hook failed ({result.error}).")
        if isinstance(result.value, str) and result.value:
            return result.value
        return Principal(None, f"{loaded.flow.name} has no identity for you at {provider}.")
    if identity.use_email and email:
        return email
    if identity.verified:
        return Principal(None, NOT_LINKED)
    if identity.use_email:
        return Principal(
            None, "Your Slack profile has no email, and this flow maps no identity for you."
        )
    return Principal(
        None,
        f"{loaded.flow.name} maps no identity for you at {provider}; ask its owner to add you.",
    )
