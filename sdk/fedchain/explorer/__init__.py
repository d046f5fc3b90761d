"""`fedchain explorer`: a read-only web view of a consortium's ledger for operators and auditors.

It reads only what any Fabric client can read through the gateway (the FL contract's queries and
the `qscc` system chaincode), signs those queries with a wallet identity, and never submits a
transaction, so it works the same on the embedded network and on real Fabric.

Modules: `ledger` (queries and caches), `reports` (demo report.json files matched to the ledger),
`plots` (server-rendered SVG), `live` (chaincode events fanned out as server-sent events),
`limits` (request size limits and strict query strings), `app` (the Starlette application),
`server` (uvicorn on 127.0.0.1).
"""
