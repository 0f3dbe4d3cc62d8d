#!/usr/bin/env bash
# Installs the real clients the tests drive, from npm, into one folder that every test shares:
# Codex CLI (its launcher and the native binary for this platform) and, when the machine's
# Node is older than 22, Node 22 itself (npm's node-linux-<arch> package).
#
#   tests/clients/install.sh [folder]      default: $THREADLINE_CLIENTS_DIR, else .clients/
#
# A folder that already holds these versions is left as it is. tests/clients/codex.py finds
# them again.
set -euo pipefail

CODEX_VERSION=0.171.0
NODE_MAJOR=22

root="$(cd "$(dirname "$0")/../.." && pwd)"
folder="${1:-${THREADLINE_CLIENTS_DIR:-$root/.clients}}"
stamp="$folder/.installed"
wanted="codex $CODEX_VERSION, node $NODE_MAJOR"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    exit 0
fi

case "$(uname -m)" in
    x86_64) arch=x64 triple=x86_64-unknown-linux-musl ;;
    aarch64 | arm64) arch=arm64 triple=aarch64-unknown-linux-musl ;;
    *) echo "No Codex build for $(uname -m)" >&2; exit 1 ;;
esac

packages=("@openai/codex@$CODEX_VERSION")
node=node
machine_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if (( machine_major < NODE_MAJOR )); then
    packages+=("node-linux-$arch@$NODE_MAJOR")
    node="$folder/node_modules/node-linux-$arch/bin/node"
fi

mkdir -p "$folder"
echo "Installing ${packages[*]} into $folder" >&2
npm install --prefix "$folder" --no-audit --no-fund --no-save --loglevel=error "${packages[@]}" >&2

# npm passes over an optional dependency it could not install without failing; Codex's native
# binary comes in one, and is the part that does the work.
native="$folder/node_modules/@openai/codex-linux-$arch/vendor/$triple/bin/codex"
if [[ ! -x "$native" ]]; then
    echo "Codex's native binary is missing: $native" >&2
    exit 1
fi
echo "$("$node" --version), $("$node" "$folder/node_modules/@openai/codex/bin/codex.js" --version)" >&2
echo "$wanted" > "$stamp"
