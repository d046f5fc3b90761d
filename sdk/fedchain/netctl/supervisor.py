"""Start what is down, stop everything, report each process: shared by the process-based backends.

The embedded network and native Fabric are both an ordered list of `Service`s. `up` on such a
network must never touch what already runs (a hospital may be mid-round against it) and must
restart exactly what is down, e.g. the one MPC node that crashed; these helpers are that
logic, written once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fedchain.netctl.process import Service, port_is_free

Progress = Callable[[str], None]


def down_services(services: Sequence[Service]) -> list[Service]:
    """The services that are not running, in start order."""
    return [svc for svc in services if not svc.running()]


def busy_ports(services: Sequence[Service]) -> list[str]:
    """'port P (name)' for every listener of `services` that something else already holds."""
    return [f"{port} ({svc.name})" for svc in services for port in svc.ports if not port_is_free(svc.host, port)]


def announce(services: Sequence[Service], progress: Progress) -> list[Service]:
    """Say what `up` is about to do; returns the services to start (empty: everything runs)."""
    missing = down_services(services)
    running = [svc.name for svc in services if svc not in missing]
    if not missing:
        progress(f"already running: {', '.join(running)}; nothing to start")
    elif running:
        progress(f"already running: {', '.join(running)}; starting only {', '.join(s.name for s in missing)}")
    return missing


def start_if_down(svc: Service, started: list[Service], progress: Progress, timeout: float) -> None:
    """Start `svc` unless it runs; a service that exited on its own says so (its log tells why)."""
    if svc.running():
        return
    if svc.state() == "exited":
        progress(f"restarting {svc.name} (it had exited; previous output in {svc.log_file})")
    else:
        progress(f"starting {svc.name}")
    started.append(svc)  # before start: a timed-out start is stopped again too
    svc.start(ready_timeout=timeout)


@contextlib.contextmanager
def rollback(progress: Progress) -> Iterator[list[Service]]:
    """Collects the services one `up` starts; if the `up` fails (Ctrl-C included) it stops them
    again, and only them: what ran before the call keeps running."""
    started: list[Service] = []
    try:
        yield started
    except BaseException:
        if started:
            progress(f"failed: stopping what this call started ({', '.join(s.name for s in started)})")
        for svc in reversed(started):
            svc.stop()
        raise


def stop_all(services: Sequence[Service]) -> list[str]:
    """Stop every service, in parallel (each may take its grace period); names of those that ran."""
    ordered = list(reversed(services))
    if not ordered:
        return []
    with ThreadPoolExecutor(max_workers=len(ordered)) as pool:
        results = list(pool.map(lambda svc: svc.stop(), ordered))
    return [svc.name for svc, was_running in zip(ordered, results, strict=True) if was_running]


def describe_all(services: Sequence[Service], kind_of: Callable[[Service], str]) -> dict[str, dict[str, Any]]:
    """Per-component status: running, state (running / exited / stopped), pid, log, kind."""
    return {svc.name: {**svc.describe(), "kind": kind_of(svc)} for svc in services}
