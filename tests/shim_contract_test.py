"""The Contract helper and the test chaincode, on the in-memory ledger (no gRPC)."""

from __future__ import annotations

import json

import pytest
from fedchain.identity.certs import cert_to_pem, create_ca, issue_certificate
from fedchain_cc.shim.contract import Contract, ContractError, Wording, encode_result, transaction
from fedchain_cc.shim.interface import Response
from fedchain_cc.testcc import TestChaincode
from fedchain_cc.testing import MockLedger, MockStub, client_identity_from_pem


@pytest.fixture(scope="module")
def client():
    ca_key, ca_cert = create_ca("ca.org1", "Org1MSP")
    _, cert = issue_certificate(ca_key, ca_cert, "alice", org="Org1MSP", ou="client", role="hospital")
    return client_identity_from_pem("Org1MSP", cert_to_pem(cert))


class Demo(Contract):
    @transaction
    def echo(self, stub, a: str, b: str = "B") -> dict:
        return {"a": a, "b": b}

    @transaction("Many")
    def many(self, stub, *rest: str) -> list:
        return list(rest)

    @transaction
    def refuse(self, stub) -> None:
        raise ContractError("not allowed here", 403)

    @transaction
    def bug(self, stub) -> None:
        raise KeyError("secret-ish detail")

    def helper(self) -> None:  # not a transaction
        pass


class Child(Demo):
    @transaction("echo")
    def echo2(self, stub, a: str) -> str:
        return "child:" + a


def test_dispatch_arity_and_results(client) -> None:
    ledger = MockLedger(Demo())
    r = ledger.simulate(client, "echo", "x").response
    assert (r.status, json.loads(r.payload)) == (200, {"a": "x", "b": "B"})
    assert json.loads(ledger.simulate(client, "echo", "x", "y").response.payload) == {"a": "x", "b": "y"}
    r = ledger.simulate(client, "echo").response
    assert r.status == 400 and "echo expects 1 to 2 argument(s) (a, b), got 0" in r.message
    assert ledger.simulate(client, "echo", "1", "2", "3").response.status == 400
    assert json.loads(ledger.simulate(client, "Many", "p", "q", "r").response.payload) == ["p", "q", "r"]
    r = ledger.simulate(client, "helper").response
    assert r.status == 400 and r.message.endswith("this contract has: Many, bug, echo, refuse")
    r = ledger.simulate(client, "refuse").response
    assert (r.status, r.message) == (403, "not allowed here")
    r = ledger.simulate(client, "bug").response
    assert r.status == 500 and r.message == "bug: internal error: KeyError: 'secret-ish detail'"
    assert "Traceback" not in r.message


def test_subclass_overrides_and_inherits(client) -> None:
    ledger = MockLedger(Child())
    assert ledger.simulate(client, "echo", "z").response.payload == b"child:z"
    assert ledger.simulate(client, "refuse").response.status == 403
    assert set(Child.transactions) == {"echo", "Many", "refuse", "bug"}


def test_encode_result_is_canonical() -> None:
    assert encode_result({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()
    assert encode_result(None) == b"" and encode_result("s") == b"s" and encode_result(b"\x00") == b"\x00"
    with pytest.raises(ValueError):
        ContractError("x", 200)


def test_testcc_on_mock_ledger(client) -> None:
    ledger = MockLedger(TestChaincode())

    def ok(fn, *args):
        r, code = ledger.invoke(client, fn, *args)
        assert r.status == 200, r.message
        return r.payload

    ok("put", "a", "1")
    assert ok("get", "a") == b"1"
    assert ok("inc", "a") == b"2" and ok("inc", "a", "5") == b"7"
    ok("put", "b", "x")
    assert json.loads(ok("range", "a", "")) == {
        "items": [{"key": "a", "value": "7"}, {"key": "b", "value": "x"}]
    }
    assert json.loads(ok("range", "", "", "1")) == {"items": [{"key": "a", "value": "7"}], "bookmark": "b"}
    ok("del", "b")
    assert ledger.simulate(client, "get", "b").response.status == 404
    assert [h["value"] for h in json.loads(ok("history", "a"))] == ["7", "2", "1"]
    who = json.loads(ok("whoami"))
    assert who["msp_id"] == "Org1MSP" and who["role"] == "hospital" and who["id"].startswith("x509::")
    r = ledger.simulate(client, "fail", "nope").response
    assert (r.status, r.message) == (400, "nope")
    assert ledger.simulate(client, "boom").response.status == 500
    assert ledger.simulate(client, "inc", "k", "x").response.status == 400
    sim = ledger.simulate(client, "event", "E", "p")
    assert sim.event == ("E", b"p")
    assert ledger.simulate(client, "transient", "t", transient={"t": b"\x01"}).response.payload == b"\x01"


class Buffered(Contract):
    """A contract with its own wording, a per-transaction context and no init dispatch (like the FL one)."""

    wording = Wording(unknown="no {fn!r} here ({known})", arity="{name} wants {want}, got {n}",
                      refusal="{fn}: {message}", internal="{fn}: broke ({type})")
    init_dispatches = False

    def context(self, stub, fn):
        return {"stub": stub, "fn": fn, "writes": []}

    def completed(self, ctx) -> None:
        for key, value in ctx["writes"]:
            ctx["stub"].put_state(key, value)

    @transaction("Put")
    def put(self, ctx, key: str, fail: str = "") -> dict:
        ctx["writes"].append((key, ctx["fn"].encode()))
        if fail == "refuse":
            raise ContractError("refused after buffering", 409)
        if fail == "crash":
            raise ValueError("secret")
        return {"buffered": len(ctx["writes"])}


def test_wording_context_and_init_hooks(client) -> None:
    ledger = MockLedger(Buffered())
    sim = ledger.simulate(client, "Put", "k")
    assert (sim.response.status, sim.response.payload, sim.writes) == (200, b'{"buffered":1}', {"k": b"Put"})
    sim = ledger.simulate(client, "Put", "k", "refuse")
    assert (sim.response.status, sim.response.message, sim.writes) == (409, "Put: refused after buffering", {})
    sim = ledger.simulate(client, "Put", "k", "crash")
    assert (sim.response.status, sim.response.message, sim.writes) == (500, "Put: broke (ValueError)", {})
    r = ledger.simulate(client, "Put").response
    assert (r.status, r.message) == (400, "Put: Put wants 1 to 2, got 0")
    r = ledger.simulate(client, "Nope").response
    assert (r.status, r.message) == (400, "no 'Nope' here (Put)")
    stub = MockStub(ledger, [b"Put", b"k"], client, "tx-init", ledger.now, {})
    assert Buffered().init(stub) == Response(status=200) and stub.simulation.writes == {}
    stub = MockStub(ledger, [b"put", b"k", b"v"], client, "tx-init2", ledger.now, {})
    assert TestChaincode().init(stub).status == 200 and stub.simulation.writes == {"k": b"v"}  # dispatches
