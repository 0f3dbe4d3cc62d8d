"""LlamaCppBackend: one loaded model, its worker thread, and the turns requests take on it."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from threadline.backends.base import BackendError, ContextLengthExceeded, Finish, ModelEvent, ModelRequest, TextDelta, Usage
from threadline.backends.grammar import GrammarError
from threadline.backends.llama_cpp.chat_template import CHATML_TEMPLATE, ChatTemplate
from threadline.backends.llama_cpp.model_file import model_file
from threadline.backends.llama_cpp.output_plan import OutputPlan, output_grammar, plan_output
from threadline.backends.llama_cpp.prompt import prompt_messages
from threadline.backends.llama_cpp.reading import reader_for
from threadline.config import ModelSettings

try:  # a dependency, but its native library can still fail to load: say so when a model loads
    import llama_cpp

    LLAMA_CPP_IMPORT_ERROR = None
except Exception as exc:  # pragma: no cover - depends on the installation
    llama_cpp = None
    LLAMA_CPP_IMPORT_ERROR = exc

log = logging.getLogger("threadline")

# A context window for models whose settings name none: most models train on far longer
# contexts than a server wants to reserve KV-cache memory for up front.
DEFAULT_CONTEXT_CAP = 8192
# Keys of `options` passed straight to llama_cpp.Llama when the model is loaded.
LOAD_OPTIONS = ("n_threads", "n_threads_batch", "n_batch", "n_ubatch", "n_gpu_layers", "seed", "flash_attn", "use_mmap", "use_mlock")
# Sampling used when the request leaves a value out. temperature and top_p follow OpenAI's
# defaults; top_k and min_p are llama.cpp's, and keep a small model's samples coherent.
DEFAULT_SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}


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
    counts_tokens = True

    def __init__(self, settings: ModelSettings) -> None:
        self.id = settings.id
        self.settings = settings
        options = settings.options
        self._requested_context = settings.context_window or options.get("n_ctx")
        # Until the model is loaded: what the settings ask for, else the default model's cap.
        # Call `start()` to have the loaded model's real window from the beginning.
        self.context_window: int | None = self._requested_context or (DEFAULT_CONTEXT_CAP if not settings.model_path else None)
        self._sampling_defaults = {key: options.get(key, value) for key, value in DEFAULT_SAMPLING.items()}
        self._free_grammars: set[str] = set()  # custom tool grammars that could not be enforced, logged once
        self._llm = None
        self._closed = False
        self._template: ChatTemplate | None = None
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

    async def resolve_context_window(self) -> int | None:
        """The loaded model's window (`start()` loads it); until then, what the settings ask for."""
        return self.context_window

    def _load(self) -> None:
        if llama_cpp is None:
            raise BackendError(
                f"llama-cpp-python cannot be imported ({LLAMA_CPP_IMPORT_ERROR}): "
                "run `pip install --force-reinstall llama-cpp-python`."
            )
        path = model_file(self.settings.model_path)
        load_options = {key: self.settings.options[key] for key in LOAD_OPTIONS if key in self.settings.options}
        try:
            with model_params(extra_buffer_types=bool(self.settings.options.get("extra_buffer_types", False))):
                llm = llama_cpp.Llama(model_path=str(path), n_ctx=self._requested_context or DEFAULT_CONTEXT_CAP, verbose=False, **load_options)
        except ValueError as exc:
            raise BackendError(
                f"llama.cpp: {exc}. Set model_path to a complete GGUF file of a model llama.cpp supports."
            ) from None
        trained = llama_cpp.llama_model_n_ctx_train(llm.model)
        window = llm.n_ctx() if self._requested_context else min(llm.n_ctx(), trained or llm.n_ctx())
        self._template = ChatTemplate(llm, llm.metadata.get("tokenizer.chat_template") or CHATML_TEMPLATE)
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._n_vocab = llm.n_vocab()
        self._llm = llm
        self.context_window = window

    # The prompt

    async def prompt_tokens(self, request: ModelRequest) -> list[int]:
        """The tokens the model reads for `request`: the chat-formatted conversation."""
        await self.start()
        return await asyncio.to_thread(self._prompt_tokens, request, plan_output(request))

    def _prompt_tokens(self, request: ModelRequest, plan: OutputPlan) -> list[int]:
        return self._template.tokens(prompt_messages(request, plan, self._template.tool_role))

    async def count_tokens(self, request: ModelRequest) -> int:
        return len(await self.prompt_tokens(request))

    # Generation

    async def generate(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        await self.start()
        plan = plan_output(request)
        prompt = await asyncio.to_thread(self._prompt_tokens, request, plan)
        if len(prompt) >= self.context_window:
            raise ContextLengthExceeded(
                f"The input is {len(prompt)} tokens, over this model's context window of {self.context_window} tokens."
            )
        grammar = await self._grammar(plan)
        reader = reader_for(plan)
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
            "presence_penalty": request.presence_penalty or 0.0,
            "frequency_penalty": request.frequency_penalty or 0.0,
        }

    async def _grammar(self, plan: OutputPlan) -> str | None:
        """The grammar that holds this output, checked to parse. A custom tool's grammar that
        cannot be enforced leaves its input free (logged once per grammar); any other fails."""
        custom = plan.forced_custom
        try:
            grammar = output_grammar(plan)
            if grammar is not None and not await asyncio.to_thread(self.grammar_parses, grammar):
                if custom is None:
                    raise BackendError("The JSON schema cannot be enforced by this model.", code="invalid_prompt", status=400)
                raise GrammarError("llama.cpp could not parse the grammar it was converted to.")
            return grammar
        except GrammarError as exc:
            definition = (custom.get("format") or {}).get("definition") or ""
            if definition not in self._free_grammars:
                self._free_grammars.add(definition)
                log.warning("the input of custom tool %s is not held to its grammar on model %s: %s", custom["name"], self.id, exc)
            return None

    def grammar_parses(self, grammar: str) -> bool:
        """Whether llama.cpp parses this GBNF grammar (its root rule `root`) for this model."""
        # llama.cpp signals a grammar it cannot parse with a null sampler, which the sampler
        # chain would crash on: try it once here.
        sampler = llama_cpp.llama_sampler_init_grammar(self._vocab, grammar.encode("utf-8"), b"root")
        if not sampler:
            return False
        llama_cpp.llama_sampler_free(sampler)
        return True

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


@contextlib.contextmanager
def model_params(extra_buffer_types: bool):
    """Load models with ggml's extra CPU weight buffers (repacked and AMX layouts) only when
    asked for (the model option `extra_buffer_types`): on some hosts the AMX one crashes the
    process at the first generation. `Llama` takes its model parameters from llama.cpp's
    defaults, so the default is what changes while a model loads."""
    defaults = llama_cpp.llama_cpp.llama_model_default_params

    def params():
        chosen = defaults()
        chosen.use_extra_bufts = extra_buffer_types
        return chosen

    with _LOADING:
        llama_cpp.llama_cpp.llama_model_default_params = params
        try:
            yield
        finally:
            llama_cpp.llama_cpp.llama_model_default_params = defaults


_LOADING = threading.Lock()  # one model at a time changes the defaults
