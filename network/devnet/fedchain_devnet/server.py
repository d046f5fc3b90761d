"""The gRPC server: TLS (optionally mutual), message size limits, the Gateway and Deliver services."""

from __future__ import annotations

import concurrent.futures
import logging

import grpc

from fedchain_devnet.config import DevnetConfig
from fedchain_devnet.gateway import add_services
from fedchain_devnet.node import Node

log = logging.getLogger(__name__)
MAX_RPCS = 256


def server_credentials(config: DevnetConfig, node: Node) -> grpc.ServerCredentials:
    org = node.consortium.org(node.gateway_org)
    cert = config.tls_cert or org.peer_tls_cert
    key = config.tls_key or org.peer_tls_key
    roots = None
    if config.client_auth:
        roots = b"".join(node.consortium.tls_root_pems())
    return grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())], root_certificates=roots,
                                       require_client_auth=config.client_auth)


def build_server(config: DevnetConfig, node: Node) -> tuple[grpc.Server, str]:
    """Server bound to config.listen (never a wildcard unless configured); returns (server, endpoint)."""
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
        # clients keep long event streams alive with pings (Fabric's peer allows one per minute; be lenient)
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_ping_strikes", 0),
    ]
    # Every RPC holds a worker thread (streams and commit-status waits for long): past the pool size,
    # callers get RESOURCE_EXHAUSTED at once instead of queueing behind idle streams.
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=MAX_RPCS, thread_name_prefix="rpc"),
                         options=options, maximum_concurrent_rpcs=MAX_RPCS)
    add_services(server, node)
    host, _, port = config.listen.rpartition(":")
    bound = server.add_secure_port(config.listen, server_credentials(config, node))
    if bound == 0:
        raise OSError(f"cannot listen on {config.listen}")
    return server, f"{host}:{bound}"
