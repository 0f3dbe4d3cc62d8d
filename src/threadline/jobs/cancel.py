"""Cancelling a background response: the rules, their wording, and stopping its run.

A queued or in-progress background response can be cancelled; cancelling a cancelled one
answers it again; any other is a 400. The cancel is stored first, by a conditional update,
so that a cancel and a finish (or a claim) never both win. The process running the response
then stops it: at once when that is this process (`cancel_background`), else at that process's next
heartbeat (`stop_cancelled`). A stopped run stores what it had produced and ends its log.
"""

from __future__ import annotations

import asyncio

from threadline.engine.runner import ResponseRun, Runner
from threadline.errors import invalid
from threadline.spec.response import with_status

CANCELLABLE = ("queued", "in_progress")

# How long a cancel waits for a response running in this process to stop.
CANCEL_WAIT_S = 2.0


async def cancel_background(runner: Runner, project: str, response_id: str) -> dict:
    """Cancel a background response and return it as it then stands: with what it had
    produced if it ran here and stopped in time. Raises 404 for an unknown id and 400 for a
    response that cannot be cancelled."""
    while True:
        response = await runner.responses.get(project, response_id)
        status = response["status"]
        if not response["background"]:
            raise invalid("Only background responses can be cancelled.", param="response_id")
        if status == "cancelled":
            break
        if status not in CANCELLABLE:
            raise invalid(
                f"Cannot cancel a response that is {status}: only queued or in-progress background responses can be cancelled.",
                param="response_id",
            )
        response = with_status(response, "cancelled")
        if await runner.jobs.cancel(response, from_status=status):
            break
        # Its status moved meanwhile: decide again on the new one.
    run = stop_run(runner, response_id)
    if run is None:
        return response
    await asyncio.wait([run.task], timeout=CANCEL_WAIT_S)
    return await runner.responses.get(project, response_id)


async def stop_cancelled(runner: Runner) -> None:
    """Stop this process's runs of responses cancelled through another process."""
    for response_id in await runner.jobs.cancelled_among(runner.owner):
        stop_run(runner, response_id)


def stop_run(runner: Runner, response_id: str) -> ResponseRun | None:
    """Stop the response's run if it runs in this process and was not stopped yet; the run, if so."""
    run = runner.runs.get(response_id)
    if run is None or run.stop_reason is not None:
        return None
    run.stop("cancelled")
    return run
