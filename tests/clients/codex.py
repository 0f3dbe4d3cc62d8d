"""Finding the Codex CLI that tests/clients/install.sh put in place, and the Node that runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE_MAJOR = 22


def clients_folder() -> Path:
    return Path(os.environ.get("THREADLINE_CLIENTS_DIR") or ROOT / ".clients")


def node_major(node: str) -> int:
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    return int(version.strip().lstrip("v").split(".")[0])


def codex_command() -> list[str]:
    """Node and Codex's own launcher (bin/codex.js, which starts the native binary), as a user's
    `codex` runs them. Raises, saying how to install them, when they are not there."""
    folder = clients_folder()
    launcher = folder / "node_modules" / "@openai" / "codex" / "bin" / "codex.js"
    if not launcher.is_file():
        raise RuntimeError(f"Codex CLI is not installed in {folder}: run `make clients` (tests/clients/install.sh)")
    installed = [path for path in (folder / "node_modules").glob("node-linux-*/bin/node") if path.is_file()]
    machine = shutil.which("node")
    if installed:
        node = str(installed[0])
    elif machine and node_major(machine) >= NODE_MAJOR:
        node = machine
    else:
        raise RuntimeError(f"No Node {NODE_MAJOR} for Codex in {folder}: run `make clients` (tests/clients/install.sh)")
    return [node, str(launcher)]
