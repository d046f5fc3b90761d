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

import hashlib

from fedchain_cc.shim.interface import ChaincodeStubAPI

CONSORTIUM = "consortium"
HEAD = "head"
_ck = ChaincodeStubAPI.create_composite_key


def rnd(round_id: int) -> str:
    return f"{round_id:020d}"


def participant(pid: str) -> str:
    return _ck("participant", [pid])


def ident(msp_id: str, fabric_id: str) -> str:
    return _ck("ident", [msp_id, hashlib.sha256(fabric_id.encode("utf-8")).hexdigest()])


def round_(round_id: int) -> str:
    return _ck("round", [rnd(round_id)])


def update(round_id: int, hospital: str) -> str:
    return _ck("update", [rnd(round_id), hospital])


def attestation(round_id: int, node_index: int) -> str:
    return _ck("attest", [rnd(round_id), f"{node_index:04d}"])


def model(round_id: int) -> str:
    return _ck("model", [rnd(round_id)])


def model_chunk(round_id: int, index: int) -> str:
    return _ck("modelchunk", [rnd(round_id), f"{index:06d}"])


def reference(round_id: int) -> str:
    return _ck("reference", [rnd(round_id)])


def reference_chunk(round_id: int, index: int) -> str:
    return _ck("refchunk", [rnd(round_id), f"{index:06d}"])


def validation(round_id: int) -> str:
    return _ck("validation", [rnd(round_id)])


def validation_chunk(round_id: int, index: int) -> str:
    return _ck("valchunk", [rnd(round_id), f"{index:06d}"])
