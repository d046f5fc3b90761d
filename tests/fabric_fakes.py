"""A fake Fabric release for orchestration tests: one Python script behind peer/orderer/configtxgen/osnadmin.

Each call appends its argv and a few env values to $FAKE_FABRIC_LOG (JSON lines). Nodes
listen on the ports their env names and sleep; admin commands succeed, except the ones
named in $FAKE_FABRIC_FAIL (e.g. "configtxgen" or "peer:install"), which exit 1. This tests
our ordering, restarts and cleanup, not Fabric itself (the FABRIC_BIN test does that).
A stand-in MPC node (reads its node.json, listens on its intake, prints READY) and a fake
`docker` (compose up/ps/stop/down/exec on a state file) complete the set.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

FAKE = r'''#!__PYTHON__
import hashlib, json, os, signal, socket, sys, time
name = os.path.basename(sys.argv[0]); args = sys.argv[1:]
with open(os.environ["FAKE_FABRIC_LOG"], "a") as fh:
    fh.write(json.dumps({"bin": name, "args": args, "msp": os.environ.get("CORE_PEER_LOCALMSPID", ""),
                         "peer": os.environ.get("CORE_PEER_ADDRESS", "")}) + "\n")
fail = set(filter(None, os.environ.get("FAKE_FABRIC_FAIL", "").split(",")))
sub = args[2] if name == "peer" and len(args) > 2 and args[0] == "lifecycle" else (args[1] if len(args) > 1 else "")
if name in fail or f"{name}:{sub}" in fail:
    print(f"Error: fake {name} {sub} failure", file=sys.stderr); sys.exit(1)

def serve(addrs):
    socks = []
    for a in addrs:
        host, port = a.rsplit(":", 1)
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, int(port))); s.listen(8); socks.append(s)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    while True:
        time.sleep(0.2)

def metrics(address, body):
    import http.server, threading
    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(body.encode())
        def log_message(self, *a):
            pass
    host, port = address.rsplit(":", 1)
    srv = http.server.ThreadingHTTPServer((host, int(port)), Metrics)
    threading.Thread(target=srv.serve_forever, daemon=True).start()

if name == "orderer":
    e = os.environ
    metrics(e["ORDERER_OPERATIONS_LISTENADDRESS"], 'consensus_etcdraft_is_leader{channel="fedchain"} 1\n')
    serve([f"{e['ORDERER_GENERAL_LISTENADDRESS']}:{e['ORDERER_GENERAL_LISTENPORT']}", e["ORDERER_ADMIN_LISTENADDRESS"]])
elif name == "peer" and args[:2] == ["node", "start"]:
    others = len([m for m in os.environ.get("FAKE_ORGS", "").split(",") if m]) - 1
    metrics(os.environ["CORE_OPERATIONS_LISTENADDRESS"],
            "# HELP gossip_membership_total_peers_known Total known peers\n"
            f'gossip_membership_total_peers_known{{channel="fedchain"}} {others}\n')
    serve([os.environ["CORE_PEER_LISTENADDRESS"]])
elif name == "configtxgen":
    out = args[args.index("-outputBlock") + 1]
    open(out, "wb").write(b"fake genesis block")
elif name == "peer" and sub == "calculatepackageid":
    data = open(args[3], "rb").read()
    label = json.loads(__import__("tarfile").open(args[3]).extractfile("metadata.json").read())["label"]
    print(f"{label}:{hashlib.sha256(data).hexdigest()}")
elif name == "peer" and sub == "checkcommitreadiness":
    print(json.dumps({"approvals": {m: True for m in os.environ.get("FAKE_ORGS", "").split(",") if m}}))
'''

CHAINCODE = r'''import os, signal, socket, sys, time
host, port = os.environ["CHAINCODE_SERVER_ADDRESS"].rsplit(":", 1)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((host, int(port))); s.listen(8)
print("READY", os.environ["CHAINCODE_ID"], flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    time.sleep(0.2)
'''


MPC_NODE = r'''import json, signal, socket, sys, time
cfg = json.load(open(sys.argv[sys.argv.index("--config") + 1]))
host, port = cfg["listen"].rsplit(":", 1)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((host, int(port))); s.listen(8)
print("READY", cfg["listen"], cfg["node_id"], flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    time.sleep(0.2)
'''

DOCKER = r'''#!__PYTHON__
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_FABRIC_LOG"], "a") as fh:
    fh.write(json.dumps({"bin": "docker", "args": args, "cwd": os.getcwd()}) + "\n")
path = os.environ["FAKE_DOCKER_STATE"]
state = json.load(open(path)) if os.path.exists(path) else {}
if args[:1] != ["compose"]:
    sys.exit(2)
rest = args[1:]
while rest and rest[0] in ("-f", "--project-directory", "--profile"):
    rest = rest[2:]
cmd, names = rest[0], [a for a in rest[1:] if not a.startswith("-")]
if cmd == "version":
    print("Docker Compose version v2.99.0-fake")
elif cmd == "ps":
    for name, st in state.items():
        print(json.dumps({"Service": name, "State": st}))
elif cmd == "up":
    fail = os.environ.get("FAKE_DOCKER_FAIL", "")
    if fail and fail in names:
        print(f"Error: fake container {fail} failed", file=sys.stderr); sys.exit(1)
    state.update({n: "running" for n in names})
elif cmd == "stop":
    state.update({n: "exited" for n in names})
elif cmd == "down":
    state = {}
json.dump(state, open(path, "w"))
'''


def make_fake_docker(root: Path) -> Path:
    """bin/docker: `docker compose` on a JSON state file ($FAKE_DOCKER_STATE); calls logged to $FAKE_FABRIC_LOG."""
    bin_dir = root / "docker-bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "docker"
    path.write_text(DOCKER.replace("__PYTHON__", sys.executable))
    path.chmod(0o755)
    return bin_dir


def make_fake_release(root: Path) -> dict[str, Path]:
    """bin/ (fake binaries), config/ (minimal core.yaml, orderer.yaml), builders/ccaas/bin/."""
    bin_dir, cfg, builder = root / "bin", root / "config", root / "builders" / "ccaas" / "bin"
    for d in (bin_dir, cfg, builder):
        d.mkdir(parents=True, exist_ok=True)
    script = FAKE.replace("__PYTHON__", sys.executable)
    for name in ("peer", "orderer", "configtxgen", "osnadmin"):
        path = bin_dir / name
        path.write_text(script)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    for name in ("detect", "build", "release"):
        path = builder / name
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    (cfg / "core.yaml").write_text(
        "peer:\n  id: jdoe\n  gateway:\n    enabled: true\nvm:\n  endpoint: unix:///var/run/docker.sock\n"
        "chaincode:\n  externalBuilders:\n    - name: ccaas_builder\n      path: /opt/hyperledger/ccaas_builder\n"
        "ledger:\n  history:\n    enableHistoryDatabase: false\n"
    )
    (cfg / "orderer.yaml").write_text("General:\n  ListenAddress: 127.0.0.1\n")
    cc = root / "fake_chaincode.py"
    cc.write_text(CHAINCODE)
    mpc = root / "fake_mpc_node.py"
    mpc.write_text(MPC_NODE)
    return {"bin": bin_dir, "cfg": cfg, "builder": builder.parent, "chaincode": cc, "mpc": mpc}


def fake_env(release: dict[str, Path], log: Path, orgs: list[str], fail: str = "") -> dict[str, str]:
    return {
        "FABRIC_BIN": str(release["bin"]), "FABRIC_CFG": str(release["cfg"]),
        "FABRIC_CCAAS_BUILDER": str(release["builder"]), "FAKE_FABRIC_LOG": str(log),
        "FAKE_FABRIC_FAIL": fail, "FAKE_ORGS": ",".join(f"{o}MSP" for o in orgs),
    }


def apply_env(monkeypatch, env: dict[str, str]) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert os.environ["FABRIC_BIN"] == env["FABRIC_BIN"]
