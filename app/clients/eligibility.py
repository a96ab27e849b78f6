"""A service client as a requester: may it request this flow now, and who is it at the
provider. Asked at the same moments as a person's eligibility (submit, approval click,
grant), from the keyed record as it is now, so a revoked client's pending request is
refused at the click and its approved one is never granted."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlmodel import Session

from app.clients import client_name
from app.clients.store import find, scope_problem
from app.flows.loader import LoadedFlow
from app.flows.policy import Verdict, allow, refuse
from app.flows.schema import provider_of
from app.identity import Principal, domain_problem
from app.runtime import Runtime


@contextmanager
def _reading(rt: Runtime, session: Session | None) -> Iterator[Session]:
    """The caller's session when it has one open: on SQLite every transaction takes the
    one write lock, so a second one would wait for the first for ever."""
    if session is not None:
        yield session
        return
    with rt.db.session() as own:
        yield own


def client_verdict(
    rt: Runtime, loaded: LoadedFlow, requester_id: str, session: Session | None = None
) -> Verdict:
    name = client_name(requester_id)
    with _reading(rt, session) as reading:
        client = find(reading, rt.audit, name)
    problem = scope_problem(client, name, loaded.flow)
    if problem is not None:
        return refuse(problem)
    return allow(f"may request: service client {name}, admitted by the flow and its token")


def client_principal(
    rt: Runtime,
    loaded: LoadedFlow,
    target_name: str,
    requester_id: str,
    session: Session | None = None,
) -> Principal:
    """The client's principal, checked as a person's is: the provider's format and the
    flow's principal_domains."""
    name = client_name(requester_id)
    flow = loaded.flow
    target = flow.target(target_name)
    if target is None:
        return Principal(None, f"{flow.name} has no target {target_name!r}")
    with _reading(rt, session) as reading:
        client = find(reading, rt.audit, name)
    if client is None:
        return Principal(None, f"service client {name} does not exist")
    value = client.principal
    problem = rt.providers.principal_problem(provider_of(target), value) or domain_problem(
        flow.principal_domains, value
    )
    if problem:
        return Principal(
            None, f"service client {name}'s principal ({value!r}) cannot be used: {problem}."
        )
    return Principal(value)
