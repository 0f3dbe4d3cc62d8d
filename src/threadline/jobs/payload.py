"""The stored job of a queued background response: what any process needs to run it, versioned.

A job stays in the database across upgrades, so whichever version of Threadline claims it
reads it by the version it was written in:

    1  {"model_request": {...}, "input_items": [...]}  (written before jobs carried a version)
    2  {"version": 2, "model_request": {...}, "input_items": [...]}
    3  version 2 with "tools": the ToolPlan, its MCP servers' headers and authorization
       taken out and kept in "secrets", sealed under the server's keys (tools/secrets.py)
    4  version 3 whose ToolPlan has a "file_search" tool; written only then, so that a
       process from before file_search refuses it rather than run it without its tool

`model_request` holds `ModelRequest`'s fields by name. A field the payload lacks (it was
added later) takes its default; one this process does not know (a newer process wrote it)
is left out.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from threadline.backends.base import ModelRequest
from threadline.tools.plan import ToolPlan
from threadline.tools.secrets import SecretBox, SecretsUnavailable

VERSION = 4
MODEL_REQUEST_FIELDS = tuple(field.name for field in fields(ModelRequest))


class UnreadableJob(Exception):
    """A stored job this process cannot run."""


@dataclass
class Job:
    model_request: ModelRequest
    input_items: list[dict]  # the response's new input, as stored with it
    tools: ToolPlan


def job_payload(model_request: ModelRequest, input_items: list[dict], tools: ToolPlan, secrets: SecretBox) -> dict:
    """The job to store with a queued response, in the current version."""
    request = {name: getattr(model_request, name) for name in MODEL_REQUEST_FIELDS}
    plan = tools.dump()
    sealed = {}
    for server in plan["mcp_servers"]:
        if server["headers"] or server["authorization"]:
            sealed[server["label"]] = {"headers": server["headers"], "authorization": server["authorization"]}
            server.update(headers={}, authorization=None)
    version = VERSION if plan["file_search"] is not None else 3
    payload = {"version": version, "model_request": request, "input_items": input_items, "tools": plan}
    if sealed:
        payload["secrets"] = secrets.seal(sealed)
    return payload


def read_job(payload: dict, secrets: SecretBox) -> Job:
    """A stored job of any version up to this one; raises UnreadableJob for anything else."""
    version = payload.get("version", 1)
    if version not in (1, 2, 3, 4):
        raise UnreadableJob(f"The job was queued by a newer version of Threadline (job version {version}).")
    try:
        stored = payload["model_request"]
        model_request = ModelRequest(**{name: stored[name] for name in MODEL_REQUEST_FIELDS if name in stored})
        tools = ToolPlan.load(payload["tools"]) if version >= 3 else ToolPlan(model_tools=model_request.tools)
        if "secrets" in payload:
            for label, kept in secrets.open(payload["secrets"]).items():
                server = tools.server(label)
                server.headers, server.authorization = kept["headers"], kept["authorization"]
        return Job(model_request, list(payload["input_items"]), tools)
    except SecretsUnavailable as error:
        raise UnreadableJob(f"The MCP secrets of this response cannot be opened here: {error}") from error
    except (KeyError, TypeError, AttributeError) as error:
        raise UnreadableJob("The stored job of this response is malformed.") from error
