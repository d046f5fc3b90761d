"""The operator/audit CLI and FLClient end to end over the in-memory ledger (a whole round by hand).

The gateway is replaced by an adapter onto MockLedger (same submit/evaluate/qscc surface);
the integration test through the embedded network lives in cc_network_test.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import time

import pytest
from fabric_protos.peer import transaction_pb2
from fedchain.cli import main as cli_main
from fedchain.cli import operator as op_cli
from fedchain.fl_client import FLClient, ModelIntegrityError
from fedchain.gateway import EndorseError, SubmitResult
from fedchain.identity import Wallet, generate_consortium
from fedchain.netconfig import load_network, write_network
from fedchain_cc.fl import FLContract
from fedchain_cc.testing import MockLedger, client_identity_from_pem

VALID = transaction_pb2.TxValidationCode.Value("VALID")


class LedgerContract:
    """The gateway Contract surface on top of MockLedger, signing as one wallet identity."""

    def __init__(self, ledger: MockLedger, signer, codes: dict[str, int]) -> None:
        self.ledger = ledger
        self.creator = client_identity_from_pem(signer.msp_id, signer.cert_pem)
        self.codes = codes

    def submit(self, fn, *args, transient=None):
        self.ledger.now += 1.0  # each transaction a second after the previous
        sim = self.ledger.simulate(self.creator, fn, *args)
        if not sim.ok:
            raise EndorseError(f"endorse of transaction {sim.tx_id} failed: chaincode response "
                               f"{sim.response.status}, {sim.response.message}")
        code = self.ledger.commit([sim])[0]
        self.codes[sim.tx_id] = transaction_pb2.TxValidationCode.Value(code)
        return SubmitResult(sim.response.payload, sim.tx_id, self.codes[sim.tx_id], code, self.ledger.block_number)

    def evaluate(self, fn, *args):
        sim = self.ledger.simulate(self.creator, fn, *args)
        if not sim.ok:
            raise EndorseError(f"evaluate failed: {sim.response.message}")
        return sim.response.payload


class Qscc:
    def __init__(self, codes: dict[str, int]) -> None:
        self.codes = codes

    def evaluate(self, fn, channel, tx_id):
        assert fn == "GetTransactionByID"
        return transaction_pb2.ProcessedTransaction(validationCode=self.codes[tx_id]).SerializeToString()


class FakeGateway:
    def __init__(self, codes):
        self.codes = codes

    def network(self, channel):
        gw = self

        class _Net:
            def contract(self, name):
                assert name == "qscc"
                return Qscc(gw.codes)

        return _Net()

    def close(self):
        pass


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """A network folder with consortium crypto, a wallet and network.json, served by one MockLedger."""
    root = tmp_path_factory.mktemp("net")
    cons = generate_consortium(root / "crypto", ("Org1", "Org2", "Org3"))
    wallet = Wallet(root / "wallet")
    wallet.put("operator", cons.orgs[0].admin_identity)
    for i in range(3):
        wallet.put(f"mpc{i}", cons.enroll(cons.orgs[i].msp_id, f"mpc{i}", "mpc_node"))
        wallet.put(f"hospital{i + 1}", cons.enroll(cons.orgs[i].msp_id, f"hospital{i + 1}", "hospital"))
    wallet.put("auditor", cons.enroll(cons.orgs[2].msp_id, "auditor", "auditor"))
    tls = "crypto/" + str(cons.orgs[0].tls_ca_cert_path.relative_to(root / "crypto"))
    write_network(root, {
        "kind": "devnet", "channel": "fedchain", "chaincode": "fedchain",
        "gateway": {"endpoint": "127.0.0.1:1", "tls_root_cert": tls},
        "mpc_nodes": [{"index": i, "id": f"mpc{i}", "endpoint": f"127.0.0.1:{2 + i}", "tls_root_cert": tls}
                      for i in range(3)],
    })
    return root


@pytest.fixture
def ledger(net, monkeypatch):
    led = MockLedger(FLContract(), start_time=time.time())
    codes: dict[str, int] = {}
    import contextlib

    @contextlib.contextmanager
    def session(args):
        cfg = load_network(args.network)
        yield cfg, FakeGateway(codes), FLClient(LedgerContract(led, cfg.identity(args.identity), codes))

    monkeypatch.setattr(op_cli, "session", session)  # audit.py looks it up there at call time
    return led


def test_round_by_hand_through_the_cli(net, ledger, tmp_path, capsys):
    n = str(net)
    genesis = tmp_path / "genesis.bin"
    genesis.write_bytes(b"genesis weights" * 50)
    new = tmp_path / "round1.bin"
    new.write_bytes(b"aggregated weights" * 40)
    report = tmp_path / "report.json"
    report.write_text('{"ok": true}')
    steps = [
        ["consortium", "init", "--network", n, "--policy", '{"norm_bound": 5.0}', "--min-accepted", "2"],
        ["participant", "register", "hospital1", "--network", n, "--role", "hospital", "--wallet-entry", "hospital1",
         "--sample-cap", "500"],
        ["participant", "register", "hospital2", "--network", n, "--role", "hospital", "--wallet-entry", "hospital2",
         "--sample-cap", "500"],
        ["participant", "register", "hospital3", "--network", n, "--role", "hospital", "--wallet-entry", "hospital3",
         "--sample-cap", "500"],
        ["participant", "register", "auditor", "--network", n, "--role", "auditor", "--wallet-entry", "auditor"],
        ["model", "genesis", "--network", n, "--spec", '{"arch": "cnn", "param_count": 750}', "--file", str(genesis)],
        ["round", "create", "--network", n, "--min-updates", "2", "--deadline-in", "600",
         "--hyperparameters", '{"lr": 0.05}'],
    ]
    for i in range(1, 4):
        hashes = ",".join(hashlib.sha256(f"share{i}{j}".encode()).hexdigest() for j in range(3))
        steps.append(["update", "submit", "--network", n, "--identity", f"hospital{i}", "--round", "1",
                      "--share-hashes", hashes, "--n-samples", str(100 * i)])
    steps.append(["round", "close", "1", "--network", n])
    for j in range(3):
        steps.append(["attest", "--network", n, "--identity", f"mpc{j}", "--round", "1", "--model-file", str(new),
                      "--accepted", "hospital1,hospital3", "--rejected", "hospital2=norm", "--report-file",
                      str(report)])
    steps.append(["model", "publish", "--network", n, "--identity", "mpc0", "--round", "1", "--file", str(new)])
    for argv in steps:
        assert cli_main.main(argv) == 0, (argv, capsys.readouterr().err)
    capsys.readouterr()

    out = tmp_path / "fetched.bin"
    assert cli_main.main(["model", "get", "--network", n, "--identity", "hospital1", "--round", "1",
                          "--out", str(out)]) == 0
    assert out.read_bytes() == new.read_bytes()
    assert cli_main.main(["round", "list", "--network", n]) == 0
    listing = capsys.readouterr().out
    assert "round    1  FINALIZED" in listing

    assert cli_main.main(["audit", "history", "--network", n, "--round", "1"]) == 0
    text = capsys.readouterr().out
    print(text, file=sys.__stderr__)
    lines = [ln for ln in text.splitlines() if ln.startswith("20")]
    # create, 3 submissions, close, 3 attestations, publish: 9 transactions, each VALID with its creator
    assert len(lines) == 9, text
    assert all(" VALID " in ln for ln in lines), text
    assert "operator@Org1MSP" in lines[0] and "CreateRound" in lines[0]
    assert sum("SubmitUpdate" in ln for ln in lines) == 3 and "hospital2@Org2MSP" in text
    assert "CloseRound" in lines[4]
    assert "round -> FINALIZED" in lines[6] and "mpc1@Org2MSP" in lines[6]
    assert "rejected [hospital2:norm]" in lines[5]
    assert "PublishModel" in lines[8] and "mpc0@Org1MSP" in lines[8]
    for tx_id in {ln.split()[2] for ln in lines}:
        assert len(tx_id) == 16
    assert cli_main.main(["audit", "history", "--network", n, "--round", "1", "--json"]) == 0
    events = json.loads(capsys.readouterr().out)
    assert [e["function"] for e in events] == ["CreateRound", *["SubmitUpdate"] * 3, "CloseRound",
                                               *["AttestResult"] * 3, "PublishModel"]
    assert all(len(e["tx_id"]) == 64 for e in events)


def test_cli_errors_are_one_clear_line(net, ledger, capsys):
    n = str(net)
    assert cli_main.main(["round", "close", "7", "--network", n]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not initialized" in err and "Traceback" not in err
    assert cli_main.main(["participant", "register", "x", "--network", n, "--role", "hospital",
                          "--wallet-entry", "hospital1"]) == 1
    assert "--sample-cap" in capsys.readouterr().err
    assert cli_main.main(["round", "list", "--network", n, "--identity", "nobody"]) == 1
    assert "no identity 'nobody'" in capsys.readouterr().err


def test_fl_client_verifies_model_hash(net, ledger):
    cfg = load_network(net)
    codes: dict[str, int] = {}
    opc = FLClient(LedgerContract(ledger, cfg.identity("operator"), codes))
    from fedchain.fl_client import mpc_node_entry

    opc.init_consortium({"mpc_nodes": [mpc_node_entry(f"mpc{j}", cfg.identity(f"mpc{j}")) for j in range(3)],
                         "threshold": 1, "quorum": 2})
    res = opc.publish_genesis_model({"param_count": 3}, b"abc")
    assert res.validation_code == VALID and json.loads(res.result)["sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert opc.get_model(0).model == b"abc"

    class Tampering(LedgerContract):
        def evaluate(self, fn, *args):
            raw = super().evaluate(fn, *args)
            if fn == "GetModel":
                rec = json.loads(raw)
                rec["model_b64"] = base64.b64encode(b"abd").decode()
                raw = json.dumps(rec).encode()
            return raw

    with pytest.raises(ModelIntegrityError):
        FLClient(Tampering(ledger, cfg.identity("operator"), codes)).get_model(0)


def test_attest_retries_on_mvcc_conflict(net):
    calls = []

    class Conflict(Exception):
        validation_code_name = "MVCC_READ_CONFLICT"

    class Flaky:
        def submit(self, fn, *args, transient=None):
            calls.append(fn)
            if len(calls) < 3:
                raise Conflict("lost the race")
            return "ok"

    client = FLClient(Flaky(), retry_delay_s=0)
    assert client.attest_result({"round_id": 1}) == "ok" and calls == ["AttestResult"] * 3
    calls.clear()
    with pytest.raises(Conflict):
        client.submit_update({"round_id": 1})  # hospitals never need to retry: no silent resubmission
    assert calls == ["SubmitUpdate"]


def test_gateway_refusal_is_reduced_to_the_chaincode_message():
    from fedchain.gateway import ErrorDetail
    from fedchain.gateway.errors import describe_gateway_error

    msg = "SubmitUpdate: hospital1 already submitted an update to round 1"
    details = [ErrorDetail(f"peer0.org{i}", f"Org{i}MSP", f"chaincode response 409, {msg}") for i in (1, 2)]
    exc = EndorseError("endorse failed: ABORTED", details=details, tx_id="ab" * 32)
    assert describe_gateway_error(exc) == f"{msg} (status 409; tx {'ab' * 8} refused by every endorser)"
    split = [details[0], ErrorDetail("peer0.org2", "Org2MSP", "chaincode response 500, SubmitUpdate: other")]
    assert "peer0.org2 (Org2MSP)" in describe_gateway_error(EndorseError("endorse failed", details=split))
    assert describe_gateway_error(EndorseError("endorse failed: UNAVAILABLE")) == "endorse failed: UNAVAILABLE"
