#!/bin/sh
# Operator wrapper for a real Fabric network on this host:
#   network/fabric/scripts/network.sh up|down|status|enroll|compose [--network D] [options]
# A thin wrapper over `fedchain network` (the same Python code): `up` is `fedchain network up --fabric`
# (orderer, peers, chaincode servers, InitConsortium once, MPC nodes; only what is down on a running
# network). D defaults to .fedchain-fabric ($FEDCHAIN_NETWORK overrides). Needs FABRIC_BIN (and
# FABRIC_CFG / FABRIC_CCAAS_BUILDER unless the release layout is used). `--help` after a command lists
# its options. See network/fabric/README.md.
set -eu
here=$(cd "$(dirname "$0")/../../.." && pwd)
python=${PYTHON:-"$here/.venv/bin/python"}
[ -x "$python" ] || python=python3
export FEDCHAIN_NETWORK="${FEDCHAIN_NETWORK:-.fedchain-fabric}"
cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  up) exec "$python" -m fedchain.cli.main network up --fabric "$@" ;;
  down|status|enroll|compose) exec "$python" -m fedchain.cli.main network "$cmd" "$@" ;;
  -h|--help|help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 up|down|status|enroll|compose [--network D] [options] (see --help)" >&2; exit 2 ;;
esac
