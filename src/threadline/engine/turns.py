"""The model's turns within one response, and the server-side tools run between them.

A turn is one call to the backend: its events, held to the output bound, are fed into the
response's `ResponseEvents`, and the OpenAI events they make are handed on as they come. The
first turn starts the model at once, alongside the response's first write, so the first
events go out without waiting for the model (unless MCP servers must be listed first).

When the model calls server-side tools (an MCP server's, web search, file search), they are run, their
items go into the output, and the model is asked again with what they returned. The loop
ends when the model answers, calls a client-side tool, or needs an approval; the output
bound counts every turn, and past `max_tool_calls` or `[tools] max_turns` no more tools are
offered, so the model answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from threadline.backends.base import OUTPUT_DELTAS, Backend, BackendError, ContextLengthExceeded, Finish, ModelEvent, ModelRequest
from threadline.engine.compaction import compact, marker_at
from threadline.engine.output_bound import bounded
from threadline.errors import APIError
from threadline.ops import tracing
from threadline.ops.metrics import tool_call_ended
from threadline.spec.request import WEB_SEARCH_TYPES
from threadline.spec.stream import Call, ResponseEvents
from threadline.tools.model_view import model_view
from threadline.tools.plan import Target, ToolPlan
from threadline.tools.toolbox import Toolbox, ToolServices

log = logging.getLogger("threadline")

NOT_RUN = "This call was not made: the response reached its limit of tool calls. Answer with what you have."
NOT_OFFERED = "This call was not made: the tool is not offered now. Answer with what you have."


class TurnLoop:
    """The model's turns of one response, fed into its ResponseEvents."""

    def __init__(
        self,
        backend: Backend,
        request: ModelRequest,
        events: ResponseEvents,
        publish: Callable[[list[dict]], None],
        open_response: Callable[[], None],
        plan: ToolPlan | None = None,
        services: ToolServices | None = None,
        checkpoint: Callable[[], Awaitable[bool]] | None = None,
        claim_approval: Callable[[str], Awaitable[bool]] | None = None,
        project: str | None = None,
    ) -> None:
        self.backend = backend
        self.request = request
        self.events = events
        self._publish = publish  # hands events on as they are made
        self._open = open_response  # lets the response's first events out, once
        self.plan = plan or ToolPlan()
        self._toolbox = Toolbox(self.plan, services, events, publish, project) if services is not None else None
        self._checkpoint = checkpoint  # stores the response as it stands, before a tool runs
        self._claim_approval = claim_approval  # takes on an approved call for this response, if no other did
        self._max_turns = services.settings.max_turns if services is not None else 1
        self._services = services
        self._calls_made = 0
        self._output_tokens = 0  # of the turns ended
        self._turn_deltas = 0  # pieces of output in the turn being run

    async def run(self, recording: asyncio.Future | None, recorded_at_start: bool) -> list[dict]:
        """Run the response's turns; the events that end it, not yet handed on (the response
        is stored before they go out).

        `recording` is the response's first write, if it runs alongside the model's start;
        nothing goes out before it is done. A response `recorded_at_start` (as in progress,
        before it ran) opens as soon as it is recorded; any other opens with the model's
        first event. A model that refuses the request (400) before anyone saw the response
        raises APIError: the client's plain 400.
        """
        try:
            if marker_at(self.request.input) is not None:
                ending = await self._compact(recording)
                if ending is not None:
                    return ending
                recording = None
            if self.plan.runs_tools:
                if not await self._before_first_turn(recording):
                    return self._ended_elsewhere()
                recording = None
            turn = 1
            while True:
                request = self._turn_request(turn)
                if request.max_output_tokens is not None and request.max_output_tokens <= 0:
                    return self._out_of_tokens()
                generator = self._model_events(request)
                try:
                    first = await (self._start(generator, recording, recorded_at_start) if turn == 1 else _first_event(generator))
                    finish = await self._turn(generator, first)
                finally:
                    await generator.aclose()
                if not isinstance(finish, Finish):
                    return self._fail(finish)
                # The model's count, else one token a delta (as the output bound counts).
                self._output_tokens += finish.usage.output_tokens if finish.usage else self._turn_deltas
                if finish.reason in ("length", "content_filter"):
                    return self.events.finish(finish)
                self._publish(self.events.end_turn(finish))
                calls, self.events.turn_calls = self.events.turn_calls, []
                server_side = [call for call in calls if call.server_side]
                if server_side and not await self._run_calls(server_side, offered={tool["name"] for tool in request.tools}):
                    return self._ended_elsewhere()
                if not server_side or len(server_side) < len(calls) or not request.tools:
                    # Answered; a client-side call or an approval is the client's to answer; or
                    # the model called tools it was no longer offered, which ran none.
                    return self.events.end("completed")
                turn += 1
        finally:
            if self._toolbox is not None:
                await self._toolbox.aclose()

    async def _before_first_turn(self, recording: asyncio.Future | None) -> bool:
        """List the MCP servers' tools and run the calls the client approved (the response
        opens first, as these make items of its own); False if the response was ended
        elsewhere before they ran."""
        if recording is not None:
            await asyncio.shield(recording)
        self._open()
        await self._toolbox.mcp.open(self.request.input)
        approved = self.plan.approved[: self.plan.max_tool_calls]
        # An approval answered by several requests at once has its call run by one of them.
        approved = [call for call in approved if self._claim_approval is None or await self._claim_approval(call.approval_request_id)]
        if not approved:
            return True
        items = [self._toolbox.mcp.add_approved(call) for call in approved]
        self._calls_made += len(items)
        if not await self._checkpoint_now():  # with the calls in it: a crash from here leaves them unfinished
            return False
        for item in items:
            await self._toolbox.mcp.run(item)
            tool_call_ended(item)
        return True

    async def _compact(self, recording: asyncio.Future | None) -> list[dict] | None:
        """Compact the input before its marker (engine/compaction.py): the compaction item is
        the response's first output item, and the model reads on from the summary. The events
        that end the response, if it ends here (a failure, or a compaction_trigger's response)."""
        if recording is not None:
            await asyncio.shield(recording)
        self._open()
        try:
            compacted = await compact(self.backend, self.request, self._services.secrets, view=lambda items: model_view(items, self.plan))
        except BackendError as error:
            return self._fail(error)
        self._publish(self.events.add_item(compacted.item) + self.events.item_done(compacted.item))
        self._publish(self.events.end_turn(Finish("stop", compacted.usage)))
        self.request = dataclasses.replace(self.request, input=compacted.input)
        return None if compacted.answer else self.events.end("completed")

    def _turn_request(self, turn: int) -> ModelRequest:
        """What the model is asked in this turn: the input, then what this response has said
        and run so far; no tools once it may not call more."""
        request = self.request
        if self._toolbox is None:
            return request
        # A compaction item of this response stands for what the model now reads first.
        output = [item for item in self.events.response["output"] if item["type"] != "compaction"]
        changes: dict = {"input": model_view(request.input + output, self.plan, self._toolbox.outputs, self._toolbox.call_ids), "tools": self.plan.model_tools}
        if request.max_output_tokens is not None:
            changes["max_output_tokens"] = request.max_output_tokens - self._output_tokens
        limited = self.plan.max_tool_calls is not None and self._calls_made >= self.plan.max_tool_calls
        asked = self.events.response["tool_choice"]  # as the request gave it
        if turn >= self._max_turns or limited:
            changes.update(tools=[], tool_choice="none")
        elif request.tool_choice == "none":
            changes["tools"] = []
        elif isinstance(asked, dict) and asked["type"] == "allowed_tools":
            changes["tool_choice"] = self._allowed_tools_choice(asked, first_turn=turn == 1)
        elif turn > 1 and request.tool_choice != "auto":
            changes["tool_choice"] = "auto"  # a call required of the first turn, not of every one
        elif isinstance(asked, dict) and asked["type"] == "mcp":
            changes["tool_choice"] = self._mcp_choice(asked)
        return dataclasses.replace(request, **changes)

    def _allowed_tools_choice(self, choice: dict, first_turn: bool) -> dict:
        """`allowed_tools` as the model gets it, on every turn: each tool by the name it is
        offered under (an MCP server: its tools, or the one named; a web or file search: its function);
        a call required of the first turn only."""
        names = [name for name, target in self.plan.targets.items() if any(allows(tool, target) for tool in choice["tools"])]
        mode = choice["mode"] if first_turn else "auto"
        return {"type": "allowed_tools", "mode": mode, "tools": [{"type": "function", "name": name} for name in names]}

    def _mcp_choice(self, choice: dict) -> str | dict:
        """`{"type": "mcp", "server_label", "name"?}` as the model gets it, now that the
        server's tools are listed: that tool, or any tool if it names none (or none listed)."""
        for name, target in self.plan.targets.items():
            if target.kind == "mcp" and target.server_label == choice["server_label"] and target.name == choice.get("name"):
                return {"type": "function", "name": name}
        return "required" if self.plan.model_tools else "auto"

    async def _run_calls(self, calls: list[Call], offered: set[str]) -> bool:
        """Run a turn's server-side calls (at once when parallel_tool_calls allows); one of a
        tool not offered this turn, or past max_tool_calls, is refused. The response is stored
        first, so that a crash meanwhile leaves them unfinished rather than run again; False
        if it was ended elsewhere (cancelled, recovered) before they ran."""
        allowed = len(calls) if self.plan.max_tool_calls is None else max(0, self.plan.max_tool_calls - self._calls_made)
        to_run = []
        for call in calls:
            if call.model_name not in offered:
                self._toolbox.refuse(call, NOT_OFFERED)
            elif len(to_run) == allowed:
                self._toolbox.refuse(call, NOT_RUN)
            else:
                to_run.append(call)
        self._calls_made += len(to_run)
        if not to_run:
            return True
        if not await self._checkpoint_now():
            return False
        if self.request.parallel_tool_calls and len(to_run) > 1:
            async with asyncio.TaskGroup() as calls_at_once:
                for call in to_run:
                    calls_at_once.create_task(self._toolbox.run(call))
        else:
            for call in to_run:
                await self._toolbox.run(call)
        return True

    async def _checkpoint_now(self) -> bool:
        return await self._checkpoint() if self._checkpoint is not None else True

    def _ended_elsewhere(self) -> list[dict]:
        """The response was cancelled or recovered elsewhere before its calls ran: they end
        unfinished, and the ending made here gives way to the stored one when it is stored."""
        return self.events.close_all("incomplete") + self.events.end("failed")

    def _out_of_tokens(self) -> list[dict]:
        self.events.response["incomplete_details"] = {"reason": "max_output_tokens"}
        return self.events.end("incomplete")

    def _model_events(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """The model's events for one turn, held to its output bound."""
        events = self.backend.generate(request)
        return tracing.model_call(self.backend, request, events if request.max_output_tokens is None else bounded(events, request))

    async def _turn(self, generator: AsyncIterator[ModelEvent], model_event: ModelEvent | Exception) -> Finish | Exception:
        """A turn from its first event on: the events fed in and handed on; how the model
        finished, or the exception it failed with."""
        self._turn_deltas = 0
        try:
            while not isinstance(model_event, Finish):
                if isinstance(model_event, Exception):
                    return model_event
                self._turn_deltas += isinstance(model_event, OUTPUT_DELTAS)
                self._publish(self.events.feed(model_event))
                model_event = await anext(generator)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure of the model is recorded, not lost
            return error
        return model_event

    async def _start(
        self, generator: AsyncIterator[ModelEvent], recording: asyncio.Future | None, recorded_at_start: bool
    ) -> ModelEvent | Exception:
        """The model's first event, or the exception it failed with; the response opens meanwhile."""
        first = asyncio.ensure_future(_first_event(generator))
        try:
            if recording is not None:
                # Nothing about the response goes out before it is stored; shielded, as a stop
                # meanwhile still needs it.
                await asyncio.shield(recording)
            if recorded_at_start:
                self._open()
            model_event = await first
        except BaseException:
            first.cancel()
            await asyncio.wait([first])  # the model's generator is left before it is closed
            raise
        refusable = not recorded_at_start and not self.plan.runs_tools  # nobody has seen the response yet
        if isinstance(model_event, BackendError) and model_event.status == 400 and refusable:
            param = "input" if isinstance(model_event, ContextLengthExceeded) else None
            raise APIError(400, model_event.message, param=param, code=model_event.code) from model_event
        self._open()
        return model_event

    def _fail(self, error: BaseException) -> list[dict]:
        if isinstance(error, StopAsyncIteration):
            code, message = "server_error", "The model stopped without finishing its answer."
        elif isinstance(error, BackendError):
            # A model that refuses the request once its stream began: the prompt's fault.
            code, message = ("invalid_prompt" if error.status == 400 else error.code), error.message
        else:
            log.error("response %s failed", self.events.response["id"], exc_info=error)
            code, message = "server_error", "The model failed while generating this response."
        return self.events.fail(code, message)


def allows(tool: dict, target: Target) -> bool:
    """Whether an entry of `allowed_tools` names the tool `target` stands for."""
    kind = tool.get("type")
    if kind in WEB_SEARCH_TYPES:
        return target.kind == "web_search"
    if kind == "file_search":
        return target.kind == "file_search"
    if kind == "mcp":
        return target.kind == "mcp" and target.server_label == tool.get("server_label") and tool.get("name") in (None, target.name)
    return target.kind == kind and target.name == tool.get("name")


async def _first_event(generator: AsyncIterator[ModelEvent]) -> ModelEvent | Exception:
    """The model's first event, or the exception it failed with."""
    try:
        return await anext(generator)
    except asyncio.CancelledError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure of the model is recorded, not lost
        return error
