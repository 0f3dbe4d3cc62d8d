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

Only the chat template's own markup becomes control tokens: text from the request, however
it is written, reaches the model as text.

    model_file     the GGUF file to load, checked: model_path, else the packaged SmolLM2
    output_plan    what the output must be: offered and forced tools, grammar
    prompt         the request as text-only chat messages (chat_messages.py's, in text)
    chat_template  chat messages as prompt tokens
    reading        the model's text as model events (text, tool calls)
    backend        LlamaCppBackend: loading, the worker thread, turns
"""

from threadline.backends.llama_cpp.backend import LlamaCppBackend
from threadline.backends.llama_cpp.model_file import DEFAULT_MODEL_ID, default_model_path

__all__ = ["DEFAULT_MODEL_ID", "LlamaCppBackend", "default_model_path"]
