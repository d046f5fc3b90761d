"""The explorer's Starlette application: one HTML page per view, SVG plots, server-sent events.

Pages are complete HTML without JavaScript; static/live.js only listens to /events and swaps in the
fresh <main> of the current page when the ledger changes. The ledger view (`LedgerView` or anything
with its methods) is synchronous gRPC, so every call runs in Starlette's thread pool.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from fedchain.explorer import reports as rep
from fedchain.explorer.ledger import IntegrityError, NotFound, iso, round_outcome
from fedchain.explorer.limits import RequestLimits, positive_int, query_params
from fedchain.explorer.live import EventHub
from fedchain.records import Round, RoundId, parse_round_id

BLOCKS_PER_PAGE = 25
TX_ID = re.compile(r"^[0-9a-f]{64}$")
NAV = [("/", "Consortium"), ("/participants", "Participants"), ("/rounds", "Rounds"), ("/decisions", "Decisions"),
       ("/models", "Model lineage"), ("/blocks", "Blocks"), ("/audit", "Audit")]
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY"), (b"cache-control", b"no-store"),
]


def _short(text: Any, n: int = 12) -> str:
    return str(text)[:n] if text else "-"


def _env() -> Environment:
    env = Environment(loader=PackageLoader("fedchain.explorer", "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.globals.update(iso=iso, short=_short, nav=NAV)
    return env


class SecurityHeaders:
    """Adds CSP and friends to every response (the pages need no inline script or style)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in SECURITY_HEADERS if k not in names]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def round_id_of(text: str) -> RoundId:
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        raise HTTPException(404, f"there is no round {text[:40]!r}: round ids are whole numbers "
                                 f"(0 is the genesis model)")
    return parse_round_id(text, genesis_ok=True)


def create_app(view: Any, *, hub: EventHub | None = None, allowed_hosts: list[str] | None = None,
               report_places: list[Path] | None = None) -> Starlette:
    """The ASGI app over `view`; `hub` (started and stopped with the app) feeds /events."""
    env = _env()

    def page(request: Request, template: str, http_status: int = 200, headers: dict[str, str] | None = None,
             **ctx: Any) -> HTMLResponse:
        ctx.setdefault("title", "")
        body = env.get_template(template).render(path=request.url.path, live=hub is not None, **ctx)
        return HTMLResponse(body, status_code=http_status, headers=headers)

    async def call(fn: Callable, *args: Any) -> Any:
        return await run_in_threadpool(fn, *args)

    def matched_reports(rounds: list[Round]) -> dict[RoundId, rep.ReportRound]:
        places = report_places if report_places is not None else []
        return rep.match_reports(rep.find_reports(places), rounds)

    # ------------------------------------------------------------------ pages
    async def consortium(request: Request) -> Response:
        query_params(request.scope["query_string"], {})
        cons = await call(view.consortium)
        info = await call(view.network_info)
        height = await call(view.height)
        return page(request, "consortium.html", title="Consortium", cons=cons, info=info, height=height)

    async def participants(request: Request) -> Response:
        query_params(request.scope["query_string"], {})
        people = await call(view.participants)
        roles: dict[str, int] = {}
        for p in people:
            roles[p.role] = roles.get(p.role, 0) + 1
        return page(request, "participants.html", title="Participants", participants=people, roles=roles)

    def _rounds_with_live_updates() -> tuple[list[Round], dict[RoundId, list[str]]]:
        """The rounds, and the updates so far of those not closed yet (their record lists none before)."""
        rounds = view.rounds()
        live = {r.round_id: sorted(u.hospital for u in view.fl.get_updates(r.round_id))
                for r in rounds if r.round_id > 0 and r.submitted is None}
        return rounds, live

    async def rounds(request: Request) -> Response:
        query_params(request.scope["query_string"], {})
        data, live = await call(_rounds_with_live_updates)
        rows = [{"round": r, "outcome": round_outcome(r),
                 "submitted": list(r.submitted) if r.submitted is not None else live.get(r.round_id, [])}
                for r in data if r.round_id > 0]
        recent = list(reversed(hub.recent)) if hub is not None else []
        return page(request, "rounds.html", title="Rounds", rows=rows, recent=recent[:15])

    async def round_detail(request: Request) -> Response:
        query_params(request.scope["query_string"], {})
        rid = round_id_of(request.path_params["rid"])
        detail = await call(view.round, rid)
        return page(request, "round.html", title=f"Round {rid}", d=detail, r=detail["round"], o=detail["outcome"])

    def _decisions() -> dict[str, Any]:
        rounds, live = _rounds_with_live_updates()
        hospitals = [p.id for p in view.participants() if p.role == "hospital"]
        known = set(hospitals)
        for r in rounds:
            o = round_outcome(r)
            hospitals += [h for h in [*o["accepted"], *o["rejected"]] if h not in known and not known.add(h)]
        matched = matched_reports(rounds)
        return {"rounds": [r for r in rounds if r.round_id > 0], "hospitals": hospitals,
                "grid": rep.decision_grid(rounds, hospitals, matched, live), "reports": matched}

    async def decisions(request: Request) -> Response:
        query_params(request.scope["query_string"], {})
        d = await call(_decisions)
        sources = sorted({str(r.source) for r in d["reports"].values()})
        return page(request, "decisions.html", title="Decisions", sources=sources, **d)

    async def decisions_svg(request: Request) -> Response:
        query_params(request.scope["query_string"], {})
        from fedchain.explorer.plots import decisions_svg as draw

        d = await call(_decisions)
        judged = [{"round": r.round_id, **{k: v for k, v in round_outcome(r).items() if k in ("accepted", "rejected")},
                   "malicious": list(d["reports"][r.round_id].malicious) if r.round_id in d["reports"] else []}
                  for r in d["rounds"] if round_outcome(r)["over"]]
        svg = await call(draw, judged, d["hospitals"])
        return Response(svg, media_type="image/svg+xml")

    async def accuracy_svg(request: Request) -> Response:
        query_params(request.scope["query_string"], {})
        from fedchain.explorer.plots import accuracy_svg as draw

        d = await call(_decisions)
        points = sorted((rid, r.accuracy) for rid, r in d["reports"].items() if r.accuracy is not None)
        return Response(await call(draw, points), media_type="image/svg+xml")

    async def models(request: Request) -> Response:
        query_params(request.scope["query_string"], {})
        lineage = await call(view.lineage)
        return page(request, "models.html", title="Model lineage", lineage=lineage)

    async def model_download(request: Request) -> Response:
        query_params(request.scope["query_string"], {})
        rid = round_id_of(request.path_params["rid"])
        data, digest = await call(view.model, rid)
        b64 = base64.b64encode(hashlib.sha256(data).digest()).decode()
        return Response(data, media_type="application/octet-stream", headers={
            "content-disposition": f'attachment; filename="fedchain-round-{rid}-{digest[:12]}.safetensors"',
            "x-fedchain-model-sha256": digest, "repr-digest": f"sha-256=:{b64}:"})

    async def blocks(request: Request) -> Response:
        q = query_params(request.scope["query_string"], {"page": positive_int()})
        height = await call(view.height)
        pages = max(1, -(-height // BLOCKS_PER_PAGE))
        number = q.get("page", 1)
        if number > pages:
            raise HTTPException(404, f"there is no page {number}: the chain has {height} blocks, {pages} page(s)")
        last = height - 1 - (number - 1) * BLOCKS_PER_PAGE
        first = max(0, last - BLOCKS_PER_PAGE + 1)
        items = await call(view.blocks, first, last) if height else []
        return page(request, "blocks.html", title="Blocks", blocks=items, page=number, pages=pages, height=height)

    async def block_detail(request: Request) -> Response:
        query_params(request.scope["query_string"], {})
        text = request.path_params["n"]
        if not text.isascii() or not text.isdigit() or len(text) > 12:
            raise HTTPException(404, f"there is no block {text[:40]!r}: block numbers are whole numbers")
        b = await call(view.block, int(text))
        height = await call(view.height)
        return page(request, "block.html", title=f"Block {b.number}", b=b, height=height)

    async def transaction(request: Request) -> Response:
        query_params(request.scope["query_string"], {})
        tx_id = request.path_params["tx_id"]
        if not TX_ID.match(tx_id):
            raise HTTPException(404, f"there is no transaction {tx_id[:80]!r}: transaction ids are 64 lowercase "
                                     f"hex digits")
        tx = await call(view.transaction, tx_id)
        return RedirectResponse(f"/blocks/{tx.block}#tx-{tx.tx_id}", status_code=303)

    async def audit(request: Request) -> Response:
        query_params(request.scope["query_string"], {})
        run = view.last_audit
        findings, invalid = [], []
        if run is not None:
            from fedchain.audit.report import all_findings, invalid_summary, where

            findings = [{"where": where(f), **f} for f in all_findings(run.report)]
            invalid = invalid_summary(run.report)
        return page(request, "audit.html", title="Audit", run=run, findings=findings, invalid=invalid)

    async def audit_run(request: Request) -> Response:
        query_params(request.scope["query_string"], {})
        origin = request.headers.get("origin")
        if origin is not None and origin != "null" and origin.split("://", 1)[-1] != request.headers.get("host"):
            raise HTTPException(403, "an audit can only be started from the explorer's own page")
        await request.body()  # the form is empty; RequestLimits caps what a client may send
        await call(view.run_audit)
        return RedirectResponse("/audit", status_code=303)

    async def events(request: Request) -> Response:
        query_params(request.scope["query_string"], {})
        if hub is None:
            raise HTTPException(404, "live updates are off")
        last = request.headers.get("last-event-id", "0")
        after = int(last) if last.isdigit() and len(last) < 12 else 0
        return StreamingResponse(hub.subscribe(after), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})

    # --------------------------------------------------------------- errors
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        titles = {400: "Bad request", 403: "Forbidden", 404: "Not found", 405: "Method not allowed"}
        message = exc.detail
        if exc.status_code == 404 and message == "Not Found":  # Starlette's own: no route matched
            message = f"there is no page {request.url.path[:200]!r} here; the pages are listed at the top"
        elif exc.status_code == 405 and message == "Method Not Allowed":
            message = f"{request.method} is not accepted here: the explorer is read-only"
        return page(request, "error.html", exc.status_code, exc.headers, title=titles.get(exc.status_code, "Error"),
                    status=exc.status_code, message=message)

    async def not_found(request: Request, exc: Exception) -> Response:
        return page(request, "error.html", 404, title="Not found", status=404, message=str(exc))

    async def integrity(request: Request, exc: Exception) -> Response:
        return page(request, "error.html", 502, title="Integrity check failed", status=502, message=str(exc))

    async def gateway_down(request: Request, exc: Exception) -> Response:
        from fedchain.gateway.errors import describe_gateway_error

        return page(request, "error.html", 503, title="Ledger unavailable", status=503,
                    message=f"the gateway did not answer: {describe_gateway_error(exc)}")

    from fedchain.gateway import GatewayError

    routes = [
        Route("/", consortium), Route("/participants", participants), Route("/rounds", rounds),
        Route("/rounds/{rid}", round_detail), Route("/decisions", decisions),
        Route("/plots/decisions.svg", decisions_svg), Route("/plots/accuracy.svg", accuracy_svg),
        Route("/models", models), Route("/models/{rid}/download", model_download),
        Route("/blocks", blocks), Route("/blocks/{n}", block_detail), Route("/tx/{tx_id}", transaction),
        Route("/audit", audit), Route("/audit", audit_run, methods=["POST"]), Route("/events", events),
        Mount("/static", StaticFiles(packages=[("fedchain.explorer", "static")]), name="static"),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette):
        if hub is not None:
            hub.start()
        try:
            yield
        finally:
            if hub is not None:
                await run_in_threadpool(hub.stop)

    middleware = [Middleware(RequestLimits), Middleware(SecurityHeaders)]
    if allowed_hosts:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers={
        HTTPException: http_error, NotFound: not_found, IntegrityError: integrity, GatewayError: gateway_down})
