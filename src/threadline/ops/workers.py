"""`threadline serve --workers N`: N processes serving one port, as uvicorn's workers.

uvicorn starts each worker as a new process that builds its own app with `worker_app`, from
the config file and database `serve` was given (passed on in the environment, under the names
`serve` reads them from). Each worker is one more Threadline process on the database: it runs
its own background worker loop and heartbeat, and takes part in cancels and recovery exactly
as a process on another machine would. Their metrics go to files in one folder, which a
scrape sums (ops/metrics.py).
"""

from __future__ import annotations

import atexit
import gc
import os
import shutil
import tempfile

from threadline.ops.metrics import MULTIPROCESS_DIR

WORKER_APP = "threadline.ops.workers:worker_app"  # uvicorn's factory, called in each worker
FLAG_VARIABLES = {"config": "THREADLINE_CONFIG", "database": "THREADLINE_DATABASE_URL", "log_format": "THREADLINE_LOG_FORMAT"}


def worker_processes(**flags: str | None) -> str:
    """What uvicorn is to run in each worker: `worker_app`, given `serve`'s --config,
    --database and --log-format. Their metrics go to a new folder, removed at exit; one set up by the operator
    (PROMETHEUS_MULTIPROC_DIR) is used as it is, and kept.

    Called before any worker starts: prometheus-client decides when it is first imported
    whether metrics live in memory or in that folder."""
    for flag, value in flags.items():
        if value is not None:
            os.environ[FLAG_VARIABLES[flag]] = value
    if not os.environ.get(MULTIPROCESS_DIR):
        folder = tempfile.mkdtemp(prefix="threadline-metrics-")
        os.environ[MULTIPROCESS_DIR] = folder
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return WORKER_APP


def worker_app():
    """The app of one worker process."""
    from threadline.app import create_app
    from threadline.cli import GC_THRESHOLDS, startup_failures_in_one_line
    from threadline.config import load_settings
    from threadline.ops import logs

    # Checked by `serve` before any worker started.
    settings = load_settings(os.environ.get(FLAG_VARIABLES["config"]), database_url=os.environ.get(FLAG_VARIABLES["database"]))
    logs.configure(os.environ.get(FLAG_VARIABLES["log_format"], "text"), logs.configured_secrets(settings))
    app = startup_failures_in_one_line(create_app(settings), settings.database_url)
    gc.freeze()  # as `serve` does for a single process
    gc.set_threshold(*GC_THRESHOLDS)
    return app
