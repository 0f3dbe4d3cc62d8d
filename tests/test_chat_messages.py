"""Responses items as chat messages: one policy, whether the model is an upstream chat server
or the embedded model, whose prompt says the same messages in text."""

from __future__ import annotations

import copy

import pytest

from threadline.backends.base import BackendError, ModelRequest
from threadline.backends.chat_messages import chat_messages
from threadline.backends.estimate import estimate_item_tokens
from threadline.backends.llama_cpp.output_plan import plan_output
from threadline.backends.llama_cpp.prompt import prompt_messages
from threadline.engine.file_inputs import file_parts
from threadline.items.ended import EndedItem

IMAGE = {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}
CONVERSATION = [
    {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Answer in French."}]},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What is this?"}, IMAGE]},
    {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "A cat, maybe."}]},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me look.", "annotations": []}]},
    {"type": "function_call", "call_id": "call_1", "name": "identify", "arguments": '{"image": 1}'},
    {"type": "function_call_output", "call_id": "call_1", "output": [{"type": "input_text", "text": "a cat"}]},
    {"type": "message", "role": "system", "content": "Be kind."},
]


def test_chat_models_get_each_item_by_the_policy():
    messages = chat_messages(ModelRequest(model="m", instructions="Be brief.", input=CONVERSATION))
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Answer in French."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": IMAGE["image_url"], "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "identify", "arguments": '{"image": 1}'}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
        {"role": "system", "content": "Be kind."},
    ]


def test_the_embedded_model_reads_the_same_messages_as_text():
    request = ModelRequest(model="m", instructions="Be brief.", input=CONVERSATION)
    assert prompt_messages(request, plan_output(request), tool_role="tool") == [
        {"role": "system", "content": "Be brief.\n\nAnswer in French."},
        {"role": "user", "content": "What is this?"},  # a text-only model: the image is left out
        {"role": "assistant", "content": 'Let me look.\n<tool_call>{"name": "identify", "arguments": {"image": 1}}</tool_call>'},
        {"role": "tool", "content": "a cat", "tool_call_id": "call_1"},
        {"role": "system", "content": "Be kind."},
    ]


@pytest.mark.parametrize(
    ("item", "named"),
    [
        ({"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "cats"}}, "'web_search_call'"),
    ],
)
def test_what_chat_cannot_carry_is_a_400_naming_it_for_every_chat_model(item, named):
    request = ModelRequest(model="m", input=[{"type": "message", "role": "user", "content": "Hi"}, item])
    for convert in (lambda: chat_messages(request), lambda: prompt_messages(request, plan_output(request), tool_role="user")):
        with pytest.raises(BackendError) as refused:
            convert()
        assert (refused.value.status, refused.value.code) == (400, "invalid_request_error")
        assert named in refused.value.message


UNSEEN = [
    IMAGE,
    {"type": "input_image", "file_id": "file-1"},
    {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
    {"type": "input_file", "file_id": "file-2"},
    {"type": "input_file", "file_url": "https://example.com/a.pdf"},
]


@pytest.mark.parametrize(
    ("item", "named"),
    [
        ({"type": "message", "role": "user", "content": [UNSEEN[1]]}, "file_id"),
        ({"type": "message", "role": "user", "content": [UNSEEN[4]]}, "file_url"),
        ({"type": "message", "role": "system", "content": [{"type": "input_text", "text": "See:"}, IMAGE]}, "system messages"),
        ({"type": "function_call_output", "call_id": "call_1", "output": [IMAGE]}, "'input_image'"),
    ],
)
def test_images_and_files_an_upstream_chat_model_cannot_take_are_a_400_naming_them(item, named):
    with pytest.raises(BackendError) as refused:
        chat_messages(ModelRequest(model="m", input=[item]))
    assert refused.value.status == 400 and named in refused.value.message


def test_the_embedded_model_leaves_out_every_image_and_file_and_joins_text_parts_as_they_are():
    text = [{"type": "input_text", "text": "Look"}, {"type": "input_text", "text": " here."}]
    request = ModelRequest(
        model="m",
        input=[
            {"type": "message", "role": "system", "content": [text[0], *UNSEEN, text[1]]},
            {"type": "message", "role": "user", "content": [*UNSEEN, *text]},
            {"type": "function_call", "call_id": "call_1", "name": "look", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": [*text, *UNSEEN]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Seen"}, UNSEEN[0]]},
        ],
    )
    assert prompt_messages(request, plan_output(request), tool_role="tool") == [
        {"role": "system", "content": "Look here."},
        {"role": "user", "content": "Look here."},
        {"role": "assistant", "content": '<tool_call>{"name": "look", "arguments": {}}</tool_call>'},
        {"role": "tool", "content": "Look here.", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "Seen"},
    ]


# --- Items of ended responses, whose conversions are kept with them (items/ended.py) ---------

ENDED_CONVERSATION = [
    *CONVERSATION,
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Calling."}]},
    {"type": "custom_tool_call", "call_id": "call_2", "name": "shell", "input": "ls -l"},
    {"type": "custom_tool_call_output", "call_id": "call_2", "output": "a.txt"},
    {"type": "message", "role": "user", "content": "Thanks."},
]


def ended(items: list[dict]) -> list[dict]:
    return [EndedItem(copy.deepcopy(item)) for item in items]


@pytest.mark.parametrize("text_only", [False, True])
def test_an_ended_items_chat_messages_are_those_of_the_same_items_unkept(text_only):
    plain = ModelRequest(model="m", instructions="Be brief.", input=copy.deepcopy(ENDED_CONVERSATION))
    kept = ModelRequest(model="m", instructions="Be brief.", input=ended(ENDED_CONVERSATION))
    expected = chat_messages(plain, text_only=text_only)
    assert chat_messages(kept, text_only=text_only) == expected  # worked out, and kept
    assert chat_messages(kept, text_only=text_only) == expected  # from what was kept
    assert kept.input == ENDED_CONVERSATION  # the items themselves are left as they were


def test_changing_the_messages_given_changes_nothing_kept():
    request = ModelRequest(model="m", input=ended(ENDED_CONVERSATION))
    expected = chat_messages(request)
    for message in chat_messages(request):
        message["content"] = "changed"
        message.setdefault("tool_calls", []).append({"id": "call_x"})
        message["extra"] = True
    first = chat_messages(request)
    first[1]["content"][1]["image_url"]["url"] = "changed"
    first[1]["content"].append({"type": "text", "text": "changed"})
    assert chat_messages(request) == expected
    assert chat_messages(request, text_only=True) == chat_messages(ModelRequest(model="m", input=ENDED_CONVERSATION), text_only=True)


def test_an_ended_item_chat_cannot_carry_is_refused_every_time():
    request = ModelRequest(model="m", input=ended([{"type": "web_search_call", "id": "ws_1", "status": "completed"}]))
    for _ in range(2):
        with pytest.raises(BackendError) as refused:
            chat_messages(request)
        assert "'web_search_call'" in refused.value.message


def test_an_ended_items_estimate_and_file_parts_are_those_of_the_same_item_unkept():
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "See"}, {"type": "input_file", "file_id": "file-1"}, IMAGE]}
    kept = EndedItem(copy.deepcopy(item))
    for _ in range(2):
        assert estimate_item_tokens(kept) == estimate_item_tokens(item)
        assert list(file_parts([item, kept])) == [(0, "content", 1, item["content"][1]), (1, "content", 1, item["content"][1])]
