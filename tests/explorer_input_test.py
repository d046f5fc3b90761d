"""The explorer's answers to bad input, without a network: a fake ledger view behind the real Starlette app.

Unknown round/block/transaction ids -> 404 with a message that says what is missing; malformed query
strings -> 400 saying what is wrong; an oversize request target, header block or body -> 414, 431, 413
before any route runs; other methods than GET (POST only for the audit) -> 405; a Host header other than
the loopback names -> 400 (DNS rebinding). Plus: the CLI binds 127.0.0.1 by default and `fedchain --help`
does not import the web stack.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest
from fedchain.explorer.app import create_app
from fedchain.explorer.ledger import BlockSummary, NotFound, TxSummary
from fedchain.explorer.live import EventHub
from fedchain.explorer.server import LOOPBACK_NAMES, ServeOptions, bind, is_loopback
from fedchain.records import Consortium, Participant, Round
from starlette.testclient import TestClient

TX = "ab" * 32
ROUND1 = {"round_id": 1, "state": "FINALIZED", "deadline": 1.7e9, "created_at": 1.7e9, "created_tx_id": TX,
          "submitted": ["h1", "h2"], "attestations": {"mpc0": {"model_hash": "c" * 64, "accepted": ["h1"],
                                                                "outcome": "ok", "tx_id": TX}},
          "finalized": {"model_hash": "c" * 64, "accepted": ["h1"], "rejected": {"h2": "norm"}},
          "mpc": {"nodes": ["mpc0"], "threshold": 0, "quorum": 1}, "base_model_hash": "b" * 64,
          "base_round_id": 0, "policy": {"min_accepted": 1}, "min_updates": 1, "model_spec": {"param_count": 1}}


class FakeView:
    """The LedgerView methods the app calls, over one finalized round and three blocks."""

    def __init__(self) -> None:
        self.last_audit = None
        self.fl = SimpleNamespace(get_updates=lambda rid: [])
        self.audits = 0

    def consortium(self) -> Consortium:
        return Consortium.from_json({
            "name": "test", "mpc_nodes": [], "threshold": 1, "quorum": 1,
            "min_accepted": 1, "max_clock_skew_s": 900, "max_model_bytes": 1, "default_policy": {},
            "head": {"last_round_id": 1, "finalized_round_id": 1, "model_hash": "c" * 64, "param_count": 1},
            "initialized_at": 1.7e9})

    def network_info(self) -> dict[str, Any]:
        return {"orgs": ["Org1MSP"], "channel": "fedchain", "chaincode": "fedchain", "gateway": "127.0.0.1:1",
                "kind": "devnet", "viewer": "auditor"}

    def participants(self) -> list[Participant]:
        return [Participant.from_json({"id": "h1", "role": "hospital", "msp_id": "Org1MSP", "identity": "x509::a::b",
                                       "sample_cap": 5})]

    def rounds(self) -> list[Round]:
        return [Round.from_json(ROUND1)]

    def round(self, rid: int) -> dict[str, Any]:
        if rid != 1:
            raise NotFound(f"there is no round {rid} on the ledger")
        from fedchain.explorer.ledger import round_outcome

        rnd = Round.from_json(ROUND1)
        return {"round": rnd, "updates": [], "transactions": [], "outcome": round_outcome(rnd)}

    def lineage(self) -> list[dict[str, Any]]:
        return []

    def model(self, rid: int) -> tuple[bytes, str]:
        raise NotFound(f"there is no round {rid} on the ledger")

    def height(self) -> int:
        return 3

    def block(self, n: int) -> BlockSummary:
        if not 0 <= n < 3:
            raise NotFound(f"there is no block {n} (the chain has 3 blocks, 0 to 2)")
        return BlockSummary(n, "a" * 64, "b" * 64, "c" * 64, (TxSummary(n, 0, TX, "ENDORSER_TRANSACTION", "VALID", 1.7e9),))

    def blocks(self, first: int, last: int) -> list[BlockSummary]:
        return [self.block(n) for n in range(last, first - 1, -1)]

    def transaction(self, tx_id: str) -> TxSummary:
        if tx_id != TX:
            raise NotFound(f"there is no transaction {tx_id} on the channel")
        return self.block(1).transactions[0]

    def run_audit(self) -> None:
        self.audits += 1


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = create_app(FakeView(), allowed_hosts=LOOPBACK_NAMES, report_places=[])
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def error_text(resp: Any) -> str:
    return resp.text.split('class="error" role="alert">', 1)[-1].split("</p>", 1)[0]


def test_pages_answer(client: TestClient) -> None:
    for path in ("/", "/participants", "/rounds", "/rounds/1", "/decisions", "/models", "/blocks", "/blocks/2",
                 "/audit", "/static/explorer.css", "/static/live.js"):
        resp = client.get(path)
        assert resp.status_code == 200, (path, resp.text[:300])
    assert client.get(f"/tx/{TX}", follow_redirects=False).headers["location"] == f"/blocks/1#tx-{TX}"


@pytest.mark.parametrize("path, words", [
    ("/rounds/7", "there is no round 7 on the ledger"),
    ("/rounds/abc", "round ids are whole numbers"),
    ("/rounds/-1", "round ids are whole numbers"),
    ("/rounds/99999999999999", "round ids are whole numbers"),
    ("/models/7/download", "there is no round 7"),
    ("/blocks/3", "there is no block 3"),
    ("/blocks/x", "block numbers are whole numbers"),
    ("/tx/" + "cd" * 32, "there is no transaction"),
    ("/tx/zz", "64 lowercase hex digits"),
    ("/blocks?page=2", "there is no page 2"),
    ("/no/such/page", "there is no page"),
])
def test_unknown_ids_are_404_with_a_clear_message(client: TestClient, path: str, words: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 404
    assert words in resp.text, error_text(resp)
    assert resp.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("query, words", [
    ("page=abc", "'abc' is not a whole number"),
    ("page=0", "outside 1.."),
    ("page=-3", "is not a whole number"),
    ("page=1&page=1", "given twice"),
    ("pg=1", "unknown query parameter 'pg'"),
    ("page", "malformed query string"),
    ("page=1&&x", "malformed query string"),
    ("page=%ff", "not valid percent-encoded UTF-8"),
    ("page=1;x=2", "is not a whole number"),
])
def test_malformed_query_strings_are_400(client: TestClient, query: str, words: str) -> None:
    resp = client.get(f"/blocks?{query}")
    assert resp.status_code == 400, resp.text[:300]
    assert words.replace("'", "&#39;") in resp.text, error_text(resp)


def test_pages_without_parameters_refuse_any() -> None:
    app = create_app(FakeView(), report_places=[])
    with TestClient(app) as c:
        for path in ("/rounds?x=1", "/?debug=1", "/rounds/1?full", "/decisions?a=%C3%28"):
            resp = c.get(path)
            assert resp.status_code == 400, path
        assert "takes no query parameters" in c.get("/rounds?x=1").text


def test_non_utf8_query_is_400(client: TestClient) -> None:
    resp = client.get("/blocks?page=%C3%28")  # invalid UTF-8 after percent-decoding
    assert resp.status_code == 400
    assert "percent-encoded UTF-8" in resp.text


def test_oversize_requests(client: TestClient) -> None:
    long_url = client.get("/rounds?" + "a" * 3000)
    assert long_url.status_code == 414 and "request target" in long_url.text
    long_path = client.get("/rounds/" + "1" * 3000)
    assert long_path.status_code == 414
    big_headers = client.get("/rounds", headers={"x-big": "a" * 9000})
    assert big_headers.status_code == 431 and "headers" in big_headers.text
    many_headers = client.get("/rounds", headers={f"x-h{i}": "1" for i in range(80)})
    assert many_headers.status_code == 431
    body = client.post("/audit", content=b"a" * 5000)
    assert body.status_code == 413 and "at most 4096" in body.text

    def chunks():  # no Content-Length: the body is counted as it streams
        for _ in range(10):
            yield b"a" * 1000

    streamed = client.post("/audit", content=chunks())
    assert streamed.status_code == 413


def test_read_only_methods(client: TestClient) -> None:
    for method in ("PUT", "DELETE", "PATCH"):
        resp = client.request(method, "/rounds")
        assert resp.status_code == 405 and "read-only" in resp.text
    assert client.post("/rounds").status_code == 405


def test_audit_post_from_another_site_is_refused(client: TestClient) -> None:
    assert client.post("/audit", headers={"origin": "http://evil.example"}).status_code == 403
    ok = client.post("/audit", headers={"origin": "http://127.0.0.1"}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/audit"


def test_host_header_must_be_loopback(client: TestClient) -> None:
    assert client.get("/rounds", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/rounds", headers={"host": "localhost:8080"}).status_code == 200


def test_security_headers(client: TestClient) -> None:
    headers = client.get("/rounds").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"


def test_events_reach_subscribers_in_order() -> None:
    hub = EventHub(network=None, chaincode="fedchain")

    async def run() -> list[str]:
        stream = hub.subscribe()
        first = await anext(stream)  # the retry hint; the subscriber is registered now
        for i, name in enumerate(("RoundCreated", "UpdateSubmitted")):
            hub.publish_for_test(SimpleNamespace(event_name=name, block_number=5 + i, tx_id=TX,
                                                 payload=b'{"round_id": 3}'))
        out = [first, await anext(stream), await anext(stream)]
        await stream.aclose()
        return out

    retry, created, submitted = asyncio.run(asyncio.wait_for(run(), 5))
    assert retry.startswith("retry:")
    assert created.startswith("id: 1\nevent: ledger\n") and '"name": "RoundCreated"' in created
    assert '"round_id": 3' in submitted and '"block": 6' in submitted

    async def resume() -> str:  # a reconnecting EventSource sends Last-Event-ID: 1 and gets event 2 again
        stream = hub.subscribe(after=1)
        await anext(stream)
        ev = await anext(stream)
        await stream.aclose()
        return ev

    assert asyncio.run(resume()).startswith("id: 2\n")


def test_an_unreachable_gateway_is_503() -> None:
    from fedchain.gateway import EvaluateError

    class Down(FakeView):
        def rounds(self) -> list[dict[str, Any]]:
            raise EvaluateError("gateway unavailable (connection refused)")

    with TestClient(create_app(Down(), report_places=[])) as c:
        resp = c.get("/rounds")
    assert resp.status_code == 503 and "the gateway did not answer" in resp.text


def test_binds_loopback_by_default() -> None:
    from fedchain.cli.main import build_parser

    args = build_parser().parse_args(["explorer"])
    assert args.host == "127.0.0.1" and args.port == 8080 and args.identity == "auditor"
    assert ServeOptions(None, "auditor").host == "127.0.0.1"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()


def test_cli_help_does_not_import_the_web_stack() -> None:
    code = ("import sys; from fedchain.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('starlette', 'uvicorn', 'jinja2', 'fedchain.explorer.app') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    help_text = subprocess.run([sys.executable, "-m", "fedchain.cli.main", "explorer", "--help"], capture_output=True,
                               text=True, timeout=60)
    assert help_text.returncode == 0 and "--identity" in help_text.stdout and "--port" in help_text.stdout
