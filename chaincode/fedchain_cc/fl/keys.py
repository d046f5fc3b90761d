"""World-state key layout (Fabric composite keys). Who writes which key is what keeps MVCC quiet.

| key                                   | written by                         |
|---------------------------------------|------------------------------------|
| consortium                            | InitConsortium (once)              |
| head                                  | operators, MPC nodes               |
| participant~{id}                      | operators                          |
| ident~{msp_id}~{sha256(fabric id)}    | operators (caller -> participant)  |
| round~{round:020d}                    | operators, MPC nodes               |
| update~{round:020d}~{hospital}        | that hospital only                 |
| attest~{round:020d}~{node index:04d}  | that MPC node only                 |
| model~{round:020d}                    | operators (genesis), MPC nodes     |
| modelchunk~{round:020d}~{i:06d}       | same as model~                     |
| reference~{round:020d} (+ refchunk~)  | operators (FLTrust reference)      |
| validation~{round:020d} (+ valchunk~) | operators (public validation batch)|

Round ids are zero-padded so that range order is numeric order.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedchain_cc.canonical import sha256_hex
from fedchain_cc.shim.interface import ChaincodeStubAPI

CONSORTIUM = "consortium"
HEAD = "head"
_ck = ChaincodeStubAPI.create_composite_key


def rnd(round_id: int) -> str:
    return f"{round_id:020d}"


def participant(pid: str) -> str:
    return _ck("participant", [pid])


def ident(msp_id: str, fabric_id: str) -> str:
    return _ck("ident", [msp_id, sha256_hex(fabric_id.encode("utf-8"))])


def round_(round_id: int) -> str:
    return _ck("round", [rnd(round_id)])


def update(round_id: int, hospital: str) -> str:
    return _ck("update", [rnd(round_id), hospital])


def attestation(round_id: int, node_index: int) -> str:
    return _ck("attest", [rnd(round_id), f"{node_index:04d}"])


@dataclass(frozen=True)
class BlobKeys:
    """A blob stored in chunks: a metadata record `{meta_type}~{round}` and `{chunk_type}~{round}~{i:06d}`."""

    meta_type: str
    chunk_type: str

    def meta(self, round_id: int) -> str:
        return _ck(self.meta_type, [rnd(round_id)])

    def chunk(self, round_id: int, index: int) -> str:
        return _ck(self.chunk_type, [rnd(round_id), f"{index:06d}"])


MODEL = BlobKeys("model", "modelchunk")
REFERENCE = BlobKeys("reference", "refchunk")
VALIDATION = BlobKeys("validation", "valchunk")

# The per-kind key functions the transactions call.
model, model_chunk = MODEL.meta, MODEL.chunk
reference, reference_chunk = REFERENCE.meta, REFERENCE.chunk
validation, validation_chunk = VALIDATION.meta, VALIDATION.chunk
