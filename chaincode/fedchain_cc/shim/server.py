"""Chaincode-as-a-service: our process is the gRPC server of `protos.Chaincode/Connect`.

The peer (a real Fabric peer through the ccaas builder, or the devnet) dials us; each
connection is one `PeerSession`. All sessions share one worker pool for transactions, so
the total concurrency is bounded no matter how many peers connect.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
from fabric_protos.peer import chaincode_shim_pb2_grpc

from fedchain_cc.shim.interface import Chaincode
from fedchain_cc.shim.session import PeerSession

log = logging.getLogger("fedchain_cc.shim")

DEFAULT_ADDRESS = "127.0.0.1:9999"
DEFAULT_MAX_MESSAGE_BYTES = 100 * 1024 * 1024  # Fabric peer default (core.yaml maxRecvMsgSize)


@dataclass(frozen=True)
class ServerTLS:
    """Server certificate and key (PEM); with `client_ca_pem` the peer must present a cert from it (mTLS)."""

    cert_pem: bytes
    key_pem: bytes
    client_ca_pem: bytes | None = None

    @classmethod
    def from_files(cls, cert: str | Path, key: str | Path, client_ca: str | Path | None = None) -> ServerTLS:
        return cls(
            Path(cert).read_bytes(),
            Path(key).read_bytes(),
            Path(client_ca).read_bytes() if client_ca else None,
        )

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)],
            root_certificates=self.client_ca_pem,
            require_client_auth=self.client_ca_pem is not None,
        )


class _Servicer(chaincode_shim_pb2_grpc.ChaincodeServicer):
    def __init__(self, server: ChaincodeServer) -> None:
        self._server = server

    def Connect(self, request_iterator, context):  # noqa: N802, ANN001, ANN201 - gRPC naming/typing
        session = self._server._new_session(context.peer())
        context.add_callback(lambda: session.close("RPC terminated"))
        return session.run(request_iterator)


class ChaincodeServer:
    """Serve `chaincode` to every peer that connects; `start()` binds, `stop()` shuts down.

    address: "host:port" (port 0 = any free port; the bound one is in `.address`).
    max_concurrent_tx: worker threads running transactions (all peers together).
    max_streams: concurrent peer connections; more are refused with RESOURCE_EXHAUSTED.
    request_timeout_s: how long a transaction waits for the peer's reply to one ledger call.
    """

    def __init__(
        self,
        chaincode: Chaincode,
        address: str = DEFAULT_ADDRESS,
        chaincode_id: str = "",
        tls: ServerTLS | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        *,
        max_concurrent_tx: int = 32,
        max_streams: int = 16,
        request_timeout_s: float = 60.0,
    ) -> None:
        if not isinstance(chaincode, Chaincode):
            raise TypeError(
                f"chaincode must be a fedchain_cc.shim.interface.Chaincode, got {type(chaincode).__name__}"
            )
        if ":" not in address:
            raise ValueError(f"address must be host:port, got {address!r}")
        self.chaincode = chaincode
        self.chaincode_id = chaincode_id
        self.tls = tls
        self._requested_address = address
        self._max_message_bytes = max_message_bytes
        self._max_streams = max_streams
        self._request_timeout_s = request_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent_tx, thread_name_prefix="cc-tx")
        self._server: grpc.Server | None = None
        self._sessions: list[PeerSession] = []
        self._lock = threading.Lock()
        self.address = address

    def _new_session(self, peer: str) -> PeerSession:
        session = PeerSession(
            self.chaincode, self.chaincode_id, self._executor, self._request_timeout_s, peer
        )
        with self._lock:
            self._sessions = [s for s in self._sessions if s.state != "closed"] + [session]
        log.info("peer %s connected", peer)
        return session

    @property
    def sessions(self) -> list[PeerSession]:
        with self._lock:
            return list(self._sessions)

    def start(self) -> ChaincodeServer:
        options = [
            ("grpc.max_receive_message_length", self._max_message_bytes),
            ("grpc.max_send_message_length", self._max_message_bytes),
            # Fabric peers ping every 60 s by default; gRPC's default policy would answer GOAWAY.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.so_reuseport", 0),
        ]
        # Each stream holds one gRPC thread (the writer) for its lifetime.
        server = grpc.server(
            ThreadPoolExecutor(max_workers=self._max_streams + 2, thread_name_prefix="cc-grpc"),
            options=options,
            maximum_concurrent_rpcs=self._max_streams,
        )
        chaincode_shim_pb2_grpc.add_ChaincodeServicer_to_server(_Servicer(self), server)
        host = self._requested_address.rsplit(":", 1)[0]
        try:
            if self.tls is not None:
                port = server.add_secure_port(self._requested_address, self.tls.credentials())
            else:
                port = server.add_insecure_port(self._requested_address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self._requested_address}: {exc}") from None
        if not port:
            raise OSError(f"cannot listen on {self._requested_address}")
        server.start()
        self._server = server
        self.address = f"{host}:{port}"
        log.info(
            "chaincode %r listening on %s (%s)",
            self.chaincode_id,
            self.address,
            "mutual TLS" if self.tls and self.tls.client_ca_pem else "TLS" if self.tls else "plaintext",
        )
        return self

    def stop(self, grace: float | None = 2.0) -> None:
        """Refuse new transactions, let in-flight ones finish (up to `grace` s), then end every stream.

        Streams end with an OK status, so a peer sees "chaincode closed the stream" and reconnects
        later; a transaction still running after `grace` is answered by no one (the peer times out).
        """
        sessions = self.sessions
        for session in sessions:
            session.draining = True
        deadline = time.monotonic() + (grace or 0.0)
        while any(s.in_flight for s in sessions) and time.monotonic() < deadline:
            time.sleep(0.02)
        for session in sessions:
            session.close("server stopping")
        if self._server is not None:
            self._server.stop(0.5).wait()
            self._server = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server terminates; returns False on timeout."""
        return self._server.wait_for_termination(timeout) is not True if self._server else True

    def __enter__(self) -> ChaincodeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(grace=0.5)
