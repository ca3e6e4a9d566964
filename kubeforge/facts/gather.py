"""Gather facts from many hosts at once: one script per host, bounded threads, one result each."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from kubeforge.errors import KubeforgeError, TransportError
from kubeforge.facts.script import build_script, parse_host_facts
from kubeforge.facts.types import FactsError, HostFacts
from kubeforge.model import Host
from kubeforge.transport.base import Command, Transport
from kubeforge.transport.policy import ConnectionLost
from kubeforge.transport.pool import fanout

log = logging.getLogger("kubeforge.facts")

FACTS_TIMEOUT_S = 60.0


class TransportSource(Protocol):
    """What gather needs from a pool: the (cached) transport of a host."""

    def get(self, host: Host) -> Transport: ...


def facts_command(etcd_data_dir: str = "/var/lib/etcd") -> Command:
    # sudo: product_uuid and ss's process names are readable only as root
    return Command(
        script=build_script(etcd_data_dir),
        sudo=True,
        timeout=FACTS_TIMEOUT_S,
        check=False,
        description="gather facts (read-only)",
    )


def gather_host(
    transport: Transport,
    host: str,
    *,
    etcd_data_dir: str = "/var/lib/etcd",
    clock: Callable[[], float] = time.time,
) -> HostFacts | FactsError:
    """Facts of one host. Never raises for a host problem: returns FactsError instead."""
    try:
        # Connect first, so the clock sample below is bracketed by one exec round trip and not by
        # the SSH handshake (seconds, with retries). Transports without connect() connect on run.
        connect = getattr(transport, "connect", None)
        if callable(connect):
            connect()
        before = clock()
        result = transport.run(facts_command(etcd_data_dir))
        after = clock()
        without_sudo = result.exit_status != 0 and result.stderr.lstrip().startswith("sudo:")
        if without_sudo:
            # Facts are read-only: without root only product_uuid and port owners stay unknown,
            # which preflight reports, rather than losing the whole host.
            sudo_error = result.stderr.strip().splitlines()[0]
            before = clock()
            result = transport.run(dataclasses.replace(facts_command(etcd_data_dir), sudo=False))
            after = clock()
    except TransportError as exc:
        return FactsError(host, f"not reached: {exc.message.removeprefix(f'[{host}] ')}", reached=False,
                          lost=isinstance(exc, ConnectionLost))
    except KubeforgeError as exc:
        return FactsError(host, f"facts script failed: {exc}", reached=True)
    if result.exit_status != 0:
        tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or [""]
        return FactsError(host, f"facts script exited {result.exit_status}: {tail[0][:300]}", reached=True)
    facts = parse_host_facts(host, result.stdout, local_before=before, local_after=after)
    if without_sudo:
        facts = dataclasses.replace(facts, problems={**facts.problems, "sudo": f"gathered without root ({sudo_error[:200]})"})
    for name, problem in facts.problems.items():
        log.debug("fact %s: %s", name, problem, extra={"host": host})
    return facts


def gather_facts(
    pool: TransportSource,
    hosts: Sequence[Host],
    *,
    limit: int = 30,
    etcd_data_dir: str = "/var/lib/etcd",
    clock: Callable[[], float] = time.time,
) -> dict[str, HostFacts | FactsError]:
    """Facts of every host, in parallel (at most ``limit`` at once), keyed by host name in
    inventory order. An unreachable host is a FactsError in the result, never an exception."""

    def one(host: Host) -> HostFacts | FactsError:
        try:
            transport = pool.get(host)
        except TransportError as exc:
            return FactsError(host.name, f"not reached: {exc.message.removeprefix(f'[{host.name}] ')}")
        facts = gather_host(transport, host.name, etcd_data_dir=etcd_data_dir, clock=clock)
        reconnect = getattr(pool, "reconnect", None)
        if isinstance(facts, FactsError) and facts.lost and callable(reconnect):
            # the facts script only reads: a connection cut under it is retried once on a new one
            log.info("facts: connection lost (%s); trying once more", facts.message, extra={"host": host.name})
            try:
                transport = reconnect(host.name)
            except TransportError as exc:
                return FactsError(host.name, f"not reached: {exc.message.removeprefix(f'[{host.name}] ')}")
            facts = gather_host(transport, host.name, etcd_data_dir=etcd_data_dir, clock=clock)
        return facts

    result = fanout(hosts, one, limit=max(1, limit))
    out: dict[str, HostFacts | FactsError] = {}
    for outcome in result.outcomes:
        # one() turns every host problem into a FactsError; anything else is a bug kept per host
        out[outcome.host] = outcome.value if outcome.ok else FactsError(outcome.host, outcome.message, reached=True)
    return out
