"""The gRPC server: TLS (optionally mutual), message size limits, the Gateway and Deliver services."""

from __future__ import annotations

import concurrent.futures
import logging

import grpc

from fedchain_devnet.config import DevnetConfig
from fedchain_devnet.gateway import add_services
from fedchain_devnet.node import Node

log = logging.getLogger(__name__)


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
    ]
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=128, thread_name_prefix="rpc"),
                         options=options, maximum_concurrent_rpcs=2000)
    add_services(server, node)
    host, _, port = config.listen.rpartition(":")
    bound = server.add_secure_port(config.listen, server_credentials(config, node))
    if bound == 0:
        raise OSError(f"cannot listen on {config.listen}")
    return server, f"{host}:{bound}"
