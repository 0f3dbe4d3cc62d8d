"""Tokens per second of the llama.cpp backend against llama-cpp-python called directly.

Both load the packaged SmolLM2-135M-Instruct with the same settings, take the same chat-
formatted prompt and sample greedily, so they generate the same tokens. The direct figure
is llama-cpp-python's own token loop (`Llama.generate` plus detokenizing each token), the
least work a caller can do; the backend adds its worker thread, the hand-off to the event
loop and the async generator. Runs alternate between the two so drift hits both alike.

    .venv/bin/python bench/embedded_model.py [--tokens 256] [--runs 5]

Prints both figures and writes them to bench/results/embedded_model.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path

import llama_cpp

from threadline.backends.base import Finish, ModelRequest
from threadline.backends.llama_cpp import DEFAULT_MODEL_ID, LlamaCppBackend, default_model_path
from threadline.backends.llama_cpp.backend import DEFAULT_CONTEXT_CAP, DEFAULT_SAMPLING, model_params
from threadline.config import ModelSettings

RESULTS = Path(__file__).parent / "results" / "embedded_model.json"
# Greedy counting runs to the token limit, so every run generates the same number of tokens.
PROMPT = "Count from 1 to 1000, separated by commas."


def direct_run(llm: llama_cpp.Llama, prompt: list[int], limit: int) -> tuple[int, float]:
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    started = time.perf_counter()
    generated = 0
    text = b""
    for token in llm.generate(
        prompt, temp=0.0, top_p=DEFAULT_SAMPLING["top_p"], top_k=DEFAULT_SAMPLING["top_k"], min_p=DEFAULT_SAMPLING["min_p"]
    ):
        generated += 1
        if llama_cpp.llama_vocab_is_eog(vocab, token) or generated >= limit:
            break
        text += llm.detokenize([token])
    return generated, time.perf_counter() - started


async def backend_run(backend: LlamaCppBackend, request: ModelRequest) -> tuple[int, float]:
    started = time.perf_counter()
    async for event in backend.generate(request):
        if isinstance(event, Finish):
            return event.usage.output_tokens, time.perf_counter() - started
    raise RuntimeError("the backend ended without a Finish")


async def main(tokens: int, runs: int) -> dict:
    request = ModelRequest(
        model=DEFAULT_MODEL_ID,
        input=[{"type": "message", "role": "user", "content": [{"type": "input_text", "text": PROMPT}]}],
        max_output_tokens=tokens,
        temperature=0,
    )
    backend = LlamaCppBackend(ModelSettings(id=DEFAULT_MODEL_ID, provider="llama-cpp"))
    await backend.start()
    with model_params(extra_buffer_types=False):  # loaded as the backend loads it
        llm = llama_cpp.Llama(str(default_model_path()), n_ctx=DEFAULT_CONTEXT_CAP, verbose=False)
    prompt = await backend.prompt_tokens(request)  # the very tokens the backend runs

    direct, through_backend = [], []
    for _ in range(runs + 1):  # the first pair warms caches and is not counted
        direct.append(direct_run(llm, prompt, tokens))
        through_backend.append(await backend_run(backend, request))
    await backend.close()
    llm.close()

    def rate(samples: list[tuple[int, float]]) -> float:
        return statistics.median(count / seconds for count, seconds in samples[1:])

    direct_rate, backend_rate = rate(direct), rate(through_backend)
    return {
        "model": DEFAULT_MODEL_ID,
        "prompt_tokens": len(prompt),
        "generated_tokens": through_backend[-1][0],
        "runs": runs,
        "n_ctx": DEFAULT_CONTEXT_CAP,
        "n_threads": llm.n_threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp_tokens_per_s": round(direct_rate, 1),
        "backend_tokens_per_s": round(backend_rate, 1),
        "backend_vs_llama_cpp": round(backend_rate / direct_rate, 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments.tokens, arguments.runs))
    print(f"llama-cpp-python directly: {result['llama_cpp_tokens_per_s']} tokens/s")
    print(f"Threadline backend:        {result['backend_tokens_per_s']} tokens/s ({result['backend_vs_llama_cpp']:.1%})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
