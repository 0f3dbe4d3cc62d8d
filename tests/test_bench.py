"""The benchmark suite's one command, in its short form: every figure measured, every target
judged, the table printed, the JSON and the plots written.

It checks that the suite runs and reports, not how fast Threadline is: the figures themselves
are for `make bench` on a quiet machine, never for assertions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PLOTS = [
    "fig1_added_latency.png", "fig2_streaming.png", "fig3_saturation.png",
    "fig4_chain_growth.png", "fig5_conversation_growth.png", "fig6_memory_per_stream.png",
]


@pytest.mark.slow
def test_the_quick_suite_measures_every_figure_and_judges_every_target(tmp_path):
    command = [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--results", str(tmp_path)]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    report = f"{finished.stdout[-6000:]}\n{finished.stderr[-6000:]}"
    assert finished.returncode == 0, report

    results = json.loads((tmp_path / "benchmarks.json").read_text())
    expected = {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13"} | ({"0"} if shutil.which("hey") else set())
    assert expected <= set(results["figures"]), report
    rows = results["table"]
    assert {row["figure"] for row in rows} >= expected - {"0"}
    judged = [row for row in rows if row["met"] is not None]
    # Every target is judged (the chain's is at turn 1000, past the short form's 300), and a
    # missed one says by how much.
    assert {row["figure"] for row in judged} >= {"1", "2", "3", "5", "6", "7", "8", "9", "10", "13"}
    assert all(row["by"] for row in judged if row["met"] is False), [row for row in judged if row["met"] is False]
    for row in rows:
        assert isinstance(row["value"], (int, float)) or row["name"].startswith("reference"), row

    assert "| target" in finished.stdout and "fig | measure" in finished.stdout
    assert (tmp_path / "benchmarks.md").read_text().startswith("| fig | measure |")
    for name in PLOTS:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert (tmp_path / "flamegraph.svg").exists() and (tmp_path / "profile.txt").read_text().startswith("Where a Threadline process spends CPU")
