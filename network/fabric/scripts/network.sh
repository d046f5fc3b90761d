#!/bin/sh
# Operator wrapper: ./network/fabric/scripts/network.sh up|down|status|compose [--dir D] [options]
# Needs FABRIC_BIN (and FABRIC_CFG / FABRIC_CCAAS_BUILDER unless the release layout is used).
# Same engine as `fedchain network up --fabric`; see network/fabric/README.md.
set -eu
here=$(cd "$(dirname "$0")/../../.." && pwd)
python=${PYTHON:-"$here/.venv/bin/python"}
[ -x "$python" ] || python=python3
exec "$python" -m fedchain.fabricnet "$@"
