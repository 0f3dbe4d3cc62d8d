"""Ending background work that no run will end: left by a process that stopped, or unreadable."""

from __future__ import annotations

from threadline.spec.items import unfinished_status
from threadline.spec.response import with_status
from threadline.store.jobs import JobStore

STOPPED = "The Threadline process generating this response stopped before it finished."


def failed(response: dict, message: str) -> dict:
    """The response, failed with a server error saying why; a call it left running (a
    tool's, stored before it ran) is shown unfinished: it may or may not have taken effect."""
    moved = with_status(response, "failed", {"code": "server_error", "message": message})
    moved["output"] = [unfinished(item) for item in response.get("output") or ()]
    return moved


def unfinished(item: dict) -> dict:
    if item.get("status") not in ("in_progress", "searching", "calling"):
        return item
    return {**item, "status": unfinished_status(item["type"])}


async def recover(jobs: JobStore) -> list[str]:
    """End the work of processes whose lease ran out: a response they left in progress fails,
    one cancelled under them stays cancelled, and either's event log gets its terminal event.
    Returns the ids of the responses ended here."""
    recovered = []
    for owned in await jobs.abandoned():
        ending = failed(owned.response, STOPPED) if owned.status == "in_progress" else with_status(owned.response, owned.status)
        if await jobs.end(owned, ending):
            recovered.append(owned.response_id)
    await jobs.forget_lapsed()
    return recovered

