"""What the benchmarks share: throwaway databases, latency summaries, profiles, and the results folder."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"

# The benchmarks run real `threadline serve` processes the same way the tests do.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.servers import ThreadlineServer, postgres_database  # noqa: E402

__all__ = ["REPO", "RESULTS", "ThreadlineServer", "database_url", "machine", "py_spy", "summarize", "write_results"]

PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


def py_spy(pid: int, seconds: float, flamegraph: Path, raw: Path, *, gil: bool = True) -> list[subprocess.Popen]:
    """py-spy recording `pid` for `seconds` at 200 samples/s, as a flame graph and as collapsed
    stacks (for a summary later); wait for the processes returned. `gil`: only samples holding
    the GIL, else those of every thread not waiting (C code that released the GIL included)."""
    common = ["--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200", "--nolineno", "--nonblocking", *(["--gil"] if gil else [])]
    return [subprocess.Popen([PY_SPY, "record", *common, "--format", form, "--output", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for form, path in (("flamegraph", flamegraph), ("raw", raw))]


@contextlib.contextmanager
def database_url(kind: str) -> Iterator[str]:
    """A new, empty database of this kind ("sqlite" or "postgresql"), removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="threadline-bench-") as folder:
            yield f"sqlite:///{folder}/threadline.db"
    elif kind == "postgresql":
        with postgres_database(f"threadline_bench_{uuid.uuid4().hex[:12]}") as url:
            yield url
    else:
        raise ValueError(f"unknown database {kind!r}")


def percentile(ordered: list[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks of an ordered sample."""
    rank = (len(ordered) - 1) * fraction
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(samples_ms: list[float]) -> dict:
    """p50/p90/p99, mean, min and max of latencies in milliseconds."""
    ordered = sorted(samples_ms)
    return {
        "n": len(ordered),
        "p50": round(percentile(ordered, 0.50), 4),
        "p90": round(percentile(ordered, 0.90), 4),
        "p99": round(percentile(ordered, 0.99), 4),
        "mean": round(sum(ordered) / len(ordered), 4),
        "min": round(ordered[0], 4),
        "max": round(ordered[-1], 4),
    }


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_results(name: str, results: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path
