"""Prompt templates kept server-side, named by a request's `prompt: {id, version, variables}`.

A template comes from `[[prompts]]` in the config or from one TOML file in `prompts_dir`.
Its instructions and input messages hold `{{variable}}` placeholders; a request fills them
with strings or with content parts (input_text, input_image, input_file). Applying one:

- the template's model and sampling settings are defaults: a field the request sets wins;
  the request's `instructions` likewise replace the template's;
- the template's messages come first in what the model sees, ahead of the earlier items and
  the request's input, as instructions are: like instructions, they are not stored as input
  items and not carried to a later response;
- a request without a version gets the template's highest version.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from threadline.errors import invalid
from threadline.items import InputItem, describe_errors, new_item_id, normalize_item
from threadline.items.models import InputContent

if TYPE_CHECKING:
    from threadline.spec.request import CreateResponseBody

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")
# The request fields a template may give defaults for.
DEFAULTS = ("model", "temperature", "top_p", "max_output_tokens")
VARIABLE = TypeAdapter(str | InputContent)
MESSAGES = TypeAdapter(list[InputItem])


class PromptTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    version: str = "1"  # a template defined without one is version "1"
    model: str | None = None
    instructions: str | None = None
    input: list[dict[str, Any]] = []  # messages: {role, content}, content a string or input parts
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_output_tokens: int | None = Field(default=None, gt=0)

    @field_validator("input")
    @classmethod
    def _messages(cls, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each one a message as a request's input may hold it (placeholders are text)."""
        for index, message in enumerate(messages):
            if message.get("type", "message") != "message":
                raise ValueError(f"input[{index}]: a template's input holds messages only")
        try:
            MESSAGES.validate_python([{"type": "message", **message} for message in messages])
        except ValidationError as error:
            param, problem = describe_errors(error.errors(), messages, root="input")
            raise ValueError(f"{param}: {problem.rstrip('.')}") from None
        return messages

    def placeholders(self) -> list[str]:
        """Every variable the template names, in order of first use."""
        texts = [self.instructions or ""] + [text for message in self.input for text in _texts(message.get("content"))]
        return list(dict.fromkeys(name for text in texts for name in PLACEHOLDER.findall(text)))


def read_prompt_dir(folder: Path) -> list[PromptTemplate]:
    """The templates in `folder`, one per *.toml file, in name order; a ValueError naming the
    file that cannot be read or is not a template."""
    templates = []
    for path in sorted(folder.glob("*.toml")):
        try:
            templates.append(PromptTemplate.model_validate(tomllib.loads(path.read_text(encoding="utf-8"))))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise ValueError(f"cannot read the prompt template {path}: {error}") from None
        except ValidationError as error:
            raise ValueError(f"the prompt template {path} is invalid: {'; '.join(map(_problem, error.errors()))}") from None
    return templates


def _problem(error: dict) -> str:
    where, message = ".".join(map(str, error["loc"])) or "template", error["msg"].removeprefix("Value error, ")
    return message if message.startswith(where) else f"{where}: {message}"


def version_order(version: str) -> tuple:
    """Versions sort as numbers where they are numbers ("10" after "9"), else as text."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in version.split("."))


class PromptTemplates:
    """The templates this server has, by id and version."""

    def __init__(self, templates: list[PromptTemplate]) -> None:
        self._versions: dict[str, dict[str, PromptTemplate]] = {}
        for template in templates:
            self._versions.setdefault(template.id, {})[template.version] = template

    def describe(self) -> str:
        """One line for the start-up log: each template with its versions."""
        return ", ".join(
            f"{prompt_id} (version{'s' if len(versions) > 1 else ''} {', '.join(sorted(versions, key=version_order))})"
            for prompt_id, versions in sorted(self._versions.items())
        )

    def __len__(self) -> int:
        return len(self._versions)

    def find(self, prompt_id: str, version: str | None) -> PromptTemplate:
        versions = self._versions.get(prompt_id)
        if versions is None:
            raise invalid(f"Prompt with id '{prompt_id}' not found.", param="prompt.id")
        if version is None:
            return versions[max(versions, key=version_order)]
        if version not in versions:
            known = ", ".join(sorted(versions, key=version_order))
            raise invalid(f"Prompt '{prompt_id}' has no version '{version}' (its versions: {known}).", param="prompt.version")
        return versions[version]

    def apply(self, body: CreateResponseBody) -> tuple[CreateResponseBody, list[dict]]:
        """The request with the template's defaults and instructions filled in, and the
        template's messages filled in as the model takes them (none when the request names no
        template). A 400 for an unknown template or version, and for a variable missing,
        unknown or of the wrong kind."""
        if body.prompt is None:
            return body, []
        template = self.find(body.prompt.id, body.prompt.version)
        values = _variables(body.prompt.variables or {})
        wanted = template.placeholders()
        for name in values:
            if name not in wanted:
                raise invalid(
                    f"Unknown prompt variable '{name}': prompt '{template.id}' version '{template.version}' has no {{{{{name}}}}}.",
                    param=f"prompt.variables.{name}",
                )
        for name in wanted:
            if name not in values:
                raise invalid(
                    f"Missing prompt variable '{name}': prompt '{template.id}' version '{template.version}' needs it.",
                    param=f"prompt.variables.{name}",
                )
        instructions = body.instructions if body.instructions is not None else _fill_text(template.instructions, values)
        messages = _validated([{**message, "content": _fill_content(message.get("content"), values, message.get("role"))} for message in template.input])
        update = {field: getattr(template, field) for field in DEFAULTS if getattr(body, field) is None and getattr(template, field) is not None}
        update["instructions"] = instructions
        # The Response shows which version ran.
        update["prompt"] = body.prompt.model_copy(update={"version": template.version, "variables": values or body.prompt.variables})
        return body.model_copy(update=update), messages


def template_messages_first(model_input: list[dict], messages: list[dict], new_count: int) -> list[dict]:
    """The model's input, which ends with the template's messages and then the request's
    `new_count` new items, with `messages` (the template's, as they are to be sent) ahead of
    the earlier items."""
    earlier = model_input[: len(model_input) - len(messages) - new_count]
    return messages + earlier + model_input[len(model_input) - new_count :]


# --- filling in ----------------------------------------------------------------------------

def _variables(variables: dict[str, Any]) -> dict[str, Any]:
    """Each value validated: a string, or an input_text, input_image or input_file part."""
    values = {}
    for name, value in variables.items():
        try:
            VARIABLE.validate_python(value)
        except ValidationError as error:
            param, message = describe_errors(error.errors(), value, root=f"prompt.variables.{name}")
            raise invalid(message, param=param) from None
        # An image's detail defaults to "auto", as OpenAI's does (and as the Response shows it).
        values[name] = {**value, "detail": value.get("detail") or "auto"} if isinstance(value, dict) and value["type"] == "input_image" else value
    return values


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") in ("input_text", "output_text")]
    return []


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    return value["text"] if value.get("type") == "input_text" else None


def _fill_text(text: str | None, values: dict[str, Any]) -> str | None:
    """Text with each placeholder replaced by its text; a part that is not text cannot go in instructions."""
    if text is None:
        return None

    def replace(match: re.Match) -> str:
        name = match.group(1)
        filled = _as_text(values[name])
        if filled is None:
            raise invalid(
                f"Prompt variable '{name}' is an {values[name]['type']}: it can fill a placeholder in the template's input messages, not in its instructions.",
                param=f"prompt.variables.{name}",
            )
        return filled

    return PLACEHOLDER.sub(replace, text)


def _fill_parts(text: str, values: dict[str, Any], part_type: str, role: str | None) -> list[dict]:
    """A text split at the placeholders whose values are images or files, which become parts
    of their own (a text all filled in is one part, though it be empty)."""
    parts: list[dict] = []
    pending, position = "", 0
    for match in PLACEHOLDER.finditer(text):
        name = match.group(1)
        value = values[name]
        filled = _as_text(value)
        pending += text[position : match.start()]
        position = match.end()
        if filled is not None:
            pending += filled
            continue
        if role == "assistant":
            raise invalid(
                f"Prompt variable '{name}' is an {value['type']}: it cannot fill a placeholder in an assistant message of the template, which holds text only.",
                param=f"prompt.variables.{name}",
            )
        if pending:
            parts.append({"type": part_type, "text": pending})
        parts.append(dict(value))
        pending = ""
    pending += text[position:]
    if pending or not parts:
        parts.append({"type": part_type, "text": pending})
    return parts


def _fill_content(content: Any, values: dict[str, Any], role: str | None) -> Any:
    """A message's content with its placeholders filled: text stays text while every value is
    text; an image or a file makes the content a list of parts."""
    if isinstance(content, str):
        parts = _fill_parts(content, values, "input_text", role)
        return parts[0]["text"] if len(parts) == 1 and parts[0]["type"] == "input_text" else parts
    if isinstance(content, list):
        filled = []
        for part in content:
            if isinstance(part, dict) and part.get("type") in ("input_text", "output_text"):
                pieces = _fill_parts(part.get("text", ""), values, part["type"], role)
                filled += [{**part, **piece} if piece["type"] == part["type"] else piece for piece in pieces]
            else:
                filled.append(part)
        return filled
    return content


def _validated(messages: list[dict]) -> list[dict]:
    """The filled-in messages as input items, normalized as the model takes them; a 400 when
    one is still not a valid message (the template's were checked at start, the variables'
    kinds where they were filled in: this is the last guard)."""
    items = [{"type": "message", **message} for message in messages]
    try:
        MESSAGES.validate_python(items)
    except ValidationError as error:
        param, problem = describe_errors(error.errors(), items, root="prompt")
        raise invalid(f"The prompt template's messages, filled in, are not valid input: {problem}", param=param) from None
    return [normalize_item(item, new_item_id("message")) for item in items]
