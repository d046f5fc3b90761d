"""Serve the explorer with uvicorn, on 127.0.0.1 unless told otherwise, optionally over TLS."""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]
EVENTS_BACKLOG_BLOCKS = 20  # the live view starts with the events of the last blocks


@dataclass(frozen=True)
class ServeOptions:
    network: str | None
    identity: str
    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: Path | None = None
    tls_key: Path | None = None
    reports: tuple[Path, ...] = ()
    live: bool = True


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build(options: ServeOptions):
    """(app, view): connect to the gateway as the identity and check it can read the consortium."""
    from fedchain.explorer.app import create_app
    from fedchain.explorer.ledger import LedgerView
    from fedchain.explorer.live import EventHub
    from fedchain.explorer.reports import default_report_places

    view = LedgerView(options.network, options.identity)
    try:
        view.consortium()  # fail now, with the contract's own message, rather than on the first page view
        height = view.height()
    except Exception:
        view.close()
        raise
    places = list(options.reports) or default_report_places(view.config.directory)
    hub = (EventHub(view.network, view.config.chaincode, max(0, height - EVENTS_BACKLOG_BLOCKS), live_from=height)
           if options.live else None)
    allowed = LOOPBACK_NAMES if is_loopback(options.host) else None  # Host checks stop DNS rebinding onto 127.0.0.1
    return create_app(view, hub=hub, allowed_hosts=allowed, report_places=places), view


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else runs: a busy port is a clear error, port 0 a real one."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)  # connections wait in the backlog until uvicorn starts accepting: none is refused
    sock.set_inheritable(True)
    return sock


def serve(options: ServeOptions) -> int:
    import uvicorn

    sock = bind(options.host, options.port)
    try:
        app, view = build(options)
    except Exception:
        sock.close()
        raise
    scheme = "https" if options.tls_cert else "http"
    shown = f"[{options.host}]" if ":" in options.host else options.host
    print(f"fedchain explorer on {scheme}://{shown}:{sock.getsockname()[1]}/ (read-only, queries signed as "
          f"{options.identity}; Ctrl-C stops it)", flush=True)
    config = uvicorn.Config(
        app, host=options.host, port=options.port, log_level="warning", access_log=False, lifespan="on",
        ssl_certfile=str(options.tls_cert) if options.tls_cert else None,
        ssl_keyfile=str(options.tls_key) if options.tls_key else None,
        h11_max_incomplete_event_size=64 * 1024,  # above limits.py's caps: clients get 414/431, not a bare 400
        timeout_graceful_shutdown=2, server_header=False,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        view.close()
    return 0
