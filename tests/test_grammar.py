"""Custom tools' grammars (regular expressions and Lark) as GBNF: llama.cpp's own grammar
parser reads each conversion, and its grammar sampler decides which texts the conversion
lets through; one real generation by the embedded model is held to a regex (slow)."""

from __future__ import annotations

import ctypes
import logging
import re

import llama_cpp
import pytest

from threadline.backends.base import Finish, ModelRequest, ToolCallDelta
from threadline.backends.grammar import GrammarError, custom_tool_gbnf, lark_to_gbnf, regex_to_gbnf
from threadline.backends.llama_cpp import DEFAULT_MODEL_ID, LlamaCppBackend, default_model_path
from threadline.config import ModelSettings

# Codex CLI's apply_patch tool is the custom tool most clients send.
APPLY_PATCH = r"""
start: begin_patch hunk+ end_patch
begin_patch: "*** Begin Patch" LF
end_patch: "*** End Patch" LF?

hunk: add_hunk | delete_hunk | update_hunk
add_hunk: "*** Add File: " filename LF add_line+
delete_hunk: "*** Delete File: " filename LF
update_hunk: "*** Update File: " filename LF change_move? change?

filename: /(.+)/
add_line: "+" /(.*)/ LF -> line

change_move: "*** Move to: " filename LF
change: (change_context | change_line)+ eof_line?
change_context: ("@@" | "@@ " /(.+)/) LF
change_line: ("+" | "-" | " ") /(.*)/ LF
eof_line: "*** End of File" LF

%import common.LF
"""
ARITHMETIC = r"""
// a sum of terms, spaced
start: expr
?expr: term (SP ("+" | "-") SP term)*
term: NUMBER | "(" expr ")" | "x"i
     | CNAME
SP: " "
%import common.NUMBER
%import common (CNAME)
"""


@pytest.fixture(scope="module")
def vocab():
    """The default model's tokenizer alone (no weights), which llama.cpp's grammar sampler needs."""
    llm = llama_cpp.Llama(model_path=str(default_model_path()), vocab_only=True, verbose=False)
    yield llm
    llm.close()


def parses(llm, gbnf: str) -> bool:
    sampler = llama_cpp.llama_sampler_init_grammar(llama_cpp.llama_model_get_vocab(llm.model), gbnf.encode(), b"root")
    if sampler:
        llama_cpp.llama_sampler_free(sampler)
    return bool(sampler)


def accepts(llm, gbnf: str, text: str) -> bool:
    """Whether llama.cpp's grammar sampler lets the model write `text` and then stop."""
    sampler = llama_cpp.llama_sampler_init_grammar(llama_cpp.llama_model_get_vocab(llm.model), gbnf.encode(), b"root")
    assert sampler, gbnf
    try:
        for token in [*llm.tokenize(text.encode(), add_bos=False, special=False), llm.token_eos()]:
            data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(id=token, logit=0.0, p=0.0))
            candidates = llama_cpp.llama_token_data_array(data=data, size=1, selected=-1, sorted=False)
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
            if data[0].logit == float("-inf"):
                return False
            if token != llm.token_eos():
                llama_cpp.llama_sampler_accept(sampler, token)
        return True
    finally:
        llama_cpp.llama_sampler_free(sampler)


REGEXES = [
    (r"^\d{3}-[a-z]+$", ["123-abc", "000-z"], ["12-abc", "123-", "123-abC", "123-abc\n"]),
    (r"(foo|bar)?baz*", ["ba", "foobazzz", "barbaz"], ["fooba z", "foobar", "baz baz"]),
    (r'"[^"\\]*"', ['""', '"hello world"'], ['"a"b"', '"back\\slash"']),
    (r"(?:ab)+c{2,}d{1,3}", ["abccd", "ababcccddd"], ["abcc", "abcd", "abccdddd", "ccd"]),
    (r"[\w.+-]+@\w+\.com", ["a.b+c@example.com"], ["@example.com", "a@example.org"]),
    (r"(?P<yes>YES|NO)!?", ["YES", "NO!"], ["yes", "MAYBE"]),
    (r"\x41\u00e9[\]\-]|\t\s", ["Aé]", "Aé-", "\t "], ["Ae]", "\t"]),
    (r"a.c", ["abc", "a c", "aéc"], ["a\nc", "ac"]),
    (r"x(|y)z", ["xz", "xyz"], ["xyyz"]),
    (r"{not a count}", ["{not a count}"], ["not a count"]),
]


@pytest.mark.parametrize(("pattern", "matching", "other"), REGEXES)
def test_regex_converts_to_the_same_language(vocab, pattern, matching, other):
    gbnf = regex_to_gbnf(pattern)
    assert parses(vocab, gbnf), gbnf
    for text in matching + other:
        assert re.fullmatch(pattern, text) is not None if text in matching else re.fullmatch(pattern, text) is None  # the table is right
        assert accepts(vocab, gbnf, text) is (text in matching), (pattern, text, gbnf)


@pytest.mark.parametrize(
    ("pattern", "named"),
    [(r"(?=a)b", "(?="), (r"(a)\1", "\\1"), (r"\bword", "\\b"), (r"a^b", "'^'"), (r"a++", "possessive"), (r"[a-z&&[^x]]", "set operation"), (r"(a", "unclosed")],
)
def test_regex_that_does_not_map_names_what(pattern, named):
    with pytest.raises(GrammarError) as refused:
        regex_to_gbnf(pattern)
    assert named in str(refused.value)


def test_apply_patch_lark_grammar_converts(vocab):
    gbnf = lark_to_gbnf(APPLY_PATCH)
    assert parses(vocab, gbnf), gbnf
    patch = "*** Begin Patch\n*** Update File: src/app.py\n@@ def main():\n-    print('hi')\n+    print('hello')\n*** End Patch\n"
    added = "*** Begin Patch\n*** Add File: notes.txt\n+first line\n+\n*** Delete File: old.txt\n*** End Patch"
    assert accepts(vocab, gbnf, patch) and accepts(vocab, gbnf, added)
    for broken in ("*** Begin Patch\n*** End Patch\n", "*** Begin Patch\n*** Add File: a\n*** End Patch\n", patch.replace("*** End Patch\n", "")):
        assert not accepts(vocab, gbnf, broken), broken


def test_lark_rules_terminals_flags_and_common_imports(vocab):
    gbnf = lark_to_gbnf(ARITHMETIC)
    assert parses(vocab, gbnf), gbnf
    for text in ("1", "1.5e3 + (X - 2)", "x - y_1", "(3)"):
        assert accepts(vocab, gbnf, text), text
    for text in ("1 +2", "1 + ", "(3", "1 * 2"):
        assert not accepts(vocab, gbnf, text), text


def test_lark_repetition_ranges_and_optional_brackets(vocab):
    gbnf = lark_to_gbnf('start: "a" ~ 2 ["b"] C ~ 1..2\nC.2: "c".."e"\n')
    assert parses(vocab, gbnf), gbnf
    assert [accepts(vocab, gbnf, text) for text in ("aac", "aabce", "ac", "aacdd d", "aabcdd", "aacd")] == [True, True, False, False, False, True]


@pytest.mark.parametrize(
    ("definition", "named"),
    [
        ('start: WORD\n%import common.WORD\n%ignore " "', "%ignore"),
        ("start: item\n", "'item'"),
        ('rule: "a"', "'start'"),
        ("start: _sep{x}\n_sep{x}: x", "template"),
        ('start: "a"\n%import other.THING', "other.THING"),
        ("start: /a(?=b)/", "(?="),
    ],
)
def test_lark_that_does_not_map_names_what(definition, named):
    with pytest.raises(GrammarError) as refused:
        lark_to_gbnf(definition)
    assert named in str(refused.value)


def test_format_choice():
    assert custom_tool_gbnf(None) is None and custom_tool_gbnf({"type": "text"}) is None
    assert custom_tool_gbnf({"type": "grammar", "syntax": "regex", "definition": "a+"}) == "root ::= \"a\"+\n"
    with pytest.raises(GrammarError):
        custom_tool_gbnf({"type": "grammar", "syntax": "ebnf", "definition": "a"})


# --- The embedded model, held to a custom tool's grammar -----------------------------------

CODE_TOOL = {
    "type": "custom",
    "name": "set_code",
    "description": "Sets the door code.",
    "format": {"type": "grammar", "syntax": "regex", "definition": r"CODE-[0-9]{4}-(red|blue)"},
}


@pytest.mark.slow
@pytest.mark.asyncio
async def test_embedded_model_writes_custom_input_held_to_its_regex(caplog):
    backend = LlamaCppBackend(ModelSettings(id=DEFAULT_MODEL_ID, provider="llama-cpp"))
    try:
        request = ModelRequest(
            model=DEFAULT_MODEL_ID,
            input=[{"type": "message", "role": "user", "content": "Set the door code to 1234, color blue."}],
            tools=[CODE_TOOL],
            tool_choice={"type": "custom", "name": "set_code"},
            temperature=1.0,
            max_output_tokens=40,
        )
        for _ in range(3):  # sampled, so not one lucky draw
            events = [event async for event in backend.generate(request)]
            call, finish = events
            assert isinstance(call, ToolCallDelta) and call.name == "set_code" and call.call_id
            assert re.fullmatch(r"CODE-[0-9]{4}-(red|blue)", call.arguments), call.arguments
            assert isinstance(finish, Finish) and finish.reason == "tool_calls"
        # A grammar that does not convert leaves the input free, logged once.
        free = {**CODE_TOOL, "format": {"type": "grammar", "syntax": "regex", "definition": r"(?=CODE)\w+"}}
        with caplog.at_level(logging.WARNING, logger="threadline"):
            for _ in range(2):
                events = [event async for event in backend.generate(ModelRequest(**{**request.__dict__, "tools": [free]}))]
                assert isinstance(events[-1], Finish)
        warnings = [record for record in caplog.records if "set_code" in record.getMessage()]
        assert len(warnings) == 1 and "(?=" in warnings[0].getMessage()
    finally:
        await backend.close()
