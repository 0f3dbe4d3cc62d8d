"""Chat messages as prompt tokens, with control tokens only where the chat template put them.

Tokenizing a rendered prompt with llama.cpp's `special=True` turns every piece of control-
token text in it into that control token, wherever the text came from: a user who writes
`<|im_end|>` would end their own turn and could write the next ones. So the prompt is cut
at the template's control tokens only, as llama.cpp cuts it, and every text between them,
the messages' text included, is tokenized with `special=False` and stays text.

Which control tokens are the template's? The template renders the messages a second time
with a filler in place of each character of their text that could be part of control-token
text: whole occurrences, and ends that could join with the template's text around them.
Control tokens in that rendering come from the template alone, and as each character is
replaced by one, they sit at the same offsets in the real rendering.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from threadline.backends.base import BackendError

# When the GGUF file has no chat template (a base model), ChatML is the most widely known.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# A private-use character: no model's control-token text holds it.
FILLER = "\ue000"
# What C's isspace() matches: the whitespace llama.cpp's lstrip/rstrip token attributes remove.
C_WHITESPACE = " \t\n\v\f\r"


@dataclass(frozen=True)
class ControlToken:
    id: int
    text: str
    lstrip: bool  # takes the whitespace before it
    rstrip: bool  # takes the whitespace after it


class ChatTemplate:
    """A loaded model's chat template (Jinja source) and the tokenizer it feeds."""

    def __init__(self, llm, source: str) -> None:
        # Imported here, as in backend.py: a broken llama.cpp install fails when a model loads.
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._llm = llm
        self._formatter = Jinja2ChatFormatter(source, eos_token=special_text(llm, llm.token_eos()), bos_token=special_text(llm, llm.token_bos()))
        # Templates that know a "tool" role get one; others see tool output as a user turn.
        self.tool_role = "tool" if "'tool'" in source or '"tool"' in source else "user"
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._bos = llm.token_bos() if llama_cpp.llama_vocab_get_add_bos(vocab) else None
        controls = control_tokens(llm)
        self._controls = {}
        for control in controls:  # llama.cpp takes the first of tokens with the same text
            self._controls.setdefault(control.text, control)
        texts = sorted(self._controls, key=len, reverse=True)
        # Alternatives are tried in order: at any offset the longest control token wins.
        self._pattern = re.compile("|".join(map(re.escape, texts))) if texts else None
        self._longest = len(texts[0]) if texts else 0
        self._prefixes = {text[:length] for text in texts for length in range(1, len(text))}
        self._suffixes = {text[length:] for text in texts for length in range(1, len(text))}

    def tokens(self, messages: list[dict]) -> list[int]:
        """The prompt's tokens: the rendered messages, with a generation prompt after them."""
        rendered = self._render(messages)
        guarded = [self._guard_message(message) for message in messages]
        reference = rendered if guarded == messages else self._render(guarded)
        if not same_outside_filler(rendered, reference):
            # The template rewrote the text in a way that moved it (tojson of filler, say):
            # offsets no longer match, so the model reads the guarded rendering instead.
            rendered = reference
        tokens = [self._bos] if self._bos is not None else []
        for piece in self._split(reference, rendered):
            if isinstance(piece, int):
                tokens.append(piece)
            else:
                tokens += self._llm.tokenize(piece.encode("utf-8"), add_bos=False, special=False)
        if len(tokens) > 1 and tokens[0] == tokens[1] == self._bos:  # the template wrote its own BOS too
            tokens = tokens[1:]
        return tokens

    def _render(self, messages: list[dict]) -> str:
        try:
            return self._formatter(messages=messages).prompt
        except Exception as exc:  # jinja errors and the template's own raise_exception
            raise BackendError(f"The model's chat template rejected the conversation: {exc}", code="invalid_prompt", status=400) from exc

    def _guard_message(self, message: dict) -> dict:
        # Roles come from a fixed set, and templates compare them: they stay as they are.
        return {key: value if key == "role" or not isinstance(value, str) else self._guard(value) for key, value in message.items()}

    def _guard(self, text: str) -> str:
        """`text` with filler for each character that could be part of control-token text,
        alone or with the template's text on either side of it."""
        if self._pattern is None or not text:
            return text
        if len(text) < self._longest and any(text in control for control in self._controls):
            return FILLER * len(text)
        spans = [match.span() for match in self._pattern.finditer(text)]
        reach = min(len(text), self._longest - 1)
        head = next((length for length in range(reach, 0, -1) if text[:length] in self._suffixes), 0)
        tail = next((length for length in range(reach, 0, -1) if text[-length:] in self._prefixes), 0)
        spans += [(0, head), (len(text) - tail, len(text))]
        chars = list(text)
        for start, end in spans:
            chars[start:end] = FILLER * (end - start)
        return "".join(chars)

    def _split(self, reference: str, rendered: str) -> list[str | int]:
        """`rendered` cut at the control tokens found in `reference`: texts and token ids."""
        pieces: list[str | int] = []
        start = 0
        for match in self._pattern.finditer(reference) if self._pattern else ():
            control = self._controls[match.group()]
            left = match.start()
            if control.lstrip:
                while left > start and rendered[left - 1] in C_WHITESPACE:
                    left -= 1
            if left > start:
                pieces.append(rendered[start:left])
            pieces.append(control.id)
            start = match.end()
            if control.rstrip:
                while start < len(rendered) and rendered[start] in C_WHITESPACE:
                    start += 1
        if start < len(rendered):
            pieces.append(rendered[start:])
        return pieces


def control_tokens(llm) -> list[ControlToken]:
    """The tokens that llama.cpp's `special=True` makes of their text, and `special=False` not."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    found = []
    for token in range(llm.n_vocab()):
        attributes = llama_cpp.llama_vocab_get_attr(vocab, token)
        if not attributes & (llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN):
            continue
        try:
            text = llama_cpp.llama_vocab_get_text(vocab, token).decode("utf-8")
        except UnicodeDecodeError:  # no str holds it, so no prompt can
            continue
        if text and FILLER not in text:
            found.append(
                ControlToken(
                    token,
                    text,
                    lstrip=bool(attributes & llama_cpp.LLAMA_TOKEN_ATTR_LSTRIP),
                    rstrip=bool(attributes & llama_cpp.LLAMA_TOKEN_ATTR_RSTRIP),
                )
            )
    return found


def special_text(llm, token: int) -> str:
    return llm.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""


def same_outside_filler(rendered: str, reference: str) -> bool:
    """Whether the two renderings differ only where `reference` holds filler."""
    if len(rendered) != len(reference):
        return False
    offset = 0
    for part in reference.split(FILLER):
        if not rendered.startswith(part, offset):
            return False
        offset += len(part) + 1
    return True
