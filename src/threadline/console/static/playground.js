// The playground: builds a Responses request from the form, sends it through
// /console/api/playground/responses, and shows the answer as its events arrive. Function
// calls get a form for their output, MCP approval requests Approve and Deny buttons; either
// continues the exchange (with previous_response_id, or in the conversation).
"use strict";

(() => {
  const ENDPOINT = "/console/api/playground/responses";
  const el = (...args) => threadline.el(...args);
  const byTestId = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);

  // Each event that streams a piece of an item, and the part of the item's rendering it extends.
  const DELTA_TARGETS = {
    "response.output_text.delta": "item-text",
    "response.refusal.delta": "item-text",
    "response.reasoning_summary_text.delta": "item-text",
    "response.reasoning_text.delta": "item-reasoning",
    "response.function_call_arguments.delta": "item-arguments",
    "response.mcp_call_arguments.delta": "item-arguments",
  };

  // What the next request continues from.
  const state = { previousResponseId: null, conversationId: null, busy: false };

  // -- the tool editors -------------------------------------------------------------------

  function functionEditor() {
    const parameters = el("textarea", { name: "parameters", rows: 6, spellcheck: "false", "data-testid": "function-parameters" },
      '{\n  "type": "object",\n  "properties": {}\n}');
    const problem = el("p", { class: "error", "data-testid": "function-error", hidden: true });
    const editor = el("div", { class: "tool", "data-testid": "function-tool" },
      el("label", {}, "Name", el("input", { name: "name", "data-testid": "function-name", placeholder: "get_weather" })),
      el("label", {}, "Description", el("input", { name: "description", "data-testid": "function-description" })),
      el("label", {}, "Parameters (JSON schema)", parameters),
      problem,
      el("button", { type: "button", class: "remove", onclick: () => editor.remove() }, "Remove"));
    parameters.addEventListener("input", () => readFunction(editor));
    return editor;
  }

  function mcpEditor() {
    const editor = el("div", { class: "tool", "data-testid": "mcp-server" },
      el("label", {}, "Label", el("input", { name: "server_label", "data-testid": "mcp-label", placeholder: "tools" })),
      el("label", {}, "URL", el("input", { name: "server_url", "data-testid": "mcp-url", placeholder: "https://example.com/mcp" })),
      el("label", {}, "Require approval",
        el("select", { name: "require_approval", "data-testid": "mcp-approval" },
          el("option", { value: "always" }, "always"), el("option", { value: "never" }, "never"))),
      el("p", { class: "error", "data-testid": "mcp-error", hidden: true }),
      el("button", { type: "button", class: "remove", onclick: () => editor.remove() }, "Remove"));
    return editor;
  }

  // A function editor's tool, or null with the problem shown beside it.
  function readFunction(editor) {
    const field = (name) => editor.querySelector(`[name="${name}"]`).value.trim();
    let problem = null;
    let parameters;
    try {
      parameters = JSON.parse(field("parameters") || "{}");
      if (parameters === null || typeof parameters !== "object" || Array.isArray(parameters)) problem = "The parameters must be a JSON object: a JSON schema.";
    } catch (error) {
      problem = `The parameters are not valid JSON: ${error.message}`;
    }
    if (!problem && !field("name")) problem = "A function needs a name.";
    showProblem(byTestId("function-error", editor), problem);
    if (problem) return null;
    const tool = { type: "function", name: field("name"), parameters };
    if (field("description")) tool.description = field("description");
    return tool;
  }

  function readMcp(editor) {
    const field = (name) => editor.querySelector(`[name="${name}"]`).value.trim();
    const problem = !field("server_label") || !field("server_url") ? "An MCP server needs a label and a URL." : null;
    showProblem(byTestId("mcp-error", editor), problem);
    if (problem) return null;
    return { type: "mcp", server_label: field("server_label"), server_url: field("server_url"), require_approval: field("require_approval") };
  }

  function showProblem(element, problem) {
    element.textContent = problem || "";
    element.hidden = !problem;
  }

  // Every tool of the form, or null when one of them is not right (each says why, beside it).
  function readTools() {
    const functions = [...document.querySelectorAll('[data-testid="function-tool"]')].map(readFunction);
    const servers = [...document.querySelectorAll('[data-testid="mcp-server"]')].map(readMcp);
    const tools = [...functions, ...servers];
    if (tools.includes(null)) return null;
    const stores = [...document.querySelectorAll('[data-testid="vector-store"]:checked')].map((box) => box.value);
    if (stores.length) tools.push({ type: "file_search", vector_store_ids: stores });
    return tools;
  }

  // -- sending ------------------------------------------------------------------------------

  async function send(input, shownInput) {
    if (state.busy) return;
    const form = byTestId("playground-form");
    showError(null);
    const tools = readTools();
    if (tools === null) {
      showError("A tool is not right: see the message beside it.");
      return;
    }
    const body = { model: form.elements.model.value, input, stream: form.elements.stream.checked };
    const instructions = form.elements.instructions.value.trim();
    if (instructions) body.instructions = instructions;
    const maxOutput = form.elements.max_output_tokens.value.trim();
    if (maxOutput) body.max_output_tokens = Number(maxOutput);
    if (tools.length) body.tools = tools;

    setBusy(true);
    try {
      const mode = form.elements.conversation_mode.value;
      if (mode === "existing") {
        state.conversationId = form.elements.conversation_id.value.trim() || null;
        if (!state.conversationId) throw new Error("Write the id of the conversation to continue.");
      } else if (mode === "new" && !state.conversationId) {
        state.conversationId = (await threadline.api("/console/api/playground/conversations", { method: "POST" })).id;
      }
      if (mode === "none") {
        if (state.previousResponseId) body.previous_response_id = state.previousResponseId;
      } else {
        body.conversation = state.conversationId;
        showConversation(state.conversationId);
      }
      const turn = newTurn(shownInput);
      const message = input[0].type === "message" ? input[0].content : null;
      if (message !== null) byTestId("input").value = "";
      try {
        if (body.stream) await threadline.stream(ENDPOINT, body, (event) => onEvent(turn, event));
        else finish(turn, await threadline.api(ENDPOINT, { method: "POST", body }));
        if (!turn.finished) throw new Error("The stream ended before the response did: its page shows how it ended.");
      } catch (error) {
        byTestId("status", turn.element).textContent = "error";
        // A message that did not get through goes back in the box, to be sent again.
        if (message !== null && !byTestId("input").value) byTestId("input").value = message;
        throw error;
      }
      return true;
    } catch (error) {
      showError(error.message);
    } finally {
      setBusy(false);
    }
  }

  function setBusy(busy) {
    state.busy = busy;
    byTestId("send").disabled = busy;
    // Nor may the exchange be started over under an answer still arriving.
    const controls = document.querySelectorAll('.actions button, [name="conversation_mode"], [data-testid="start-over"]');
    for (const control of controls) control.disabled = busy;
  }

  function showError(message) {
    const box = byTestId("error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  function showConversation(conversationId) {
    const holder = byTestId("conversation-link-holder");
    holder.replaceChildren("Conversation ",
      el("a", { href: `/console/conversations/${encodeURIComponent(conversationId)}`, "data-testid": "conversation-link" }, conversationId));
  }

  function startOver() {
    state.previousResponseId = null;
    state.conversationId = null;
    byTestId("transcript").replaceChildren();
    byTestId("conversation-link-holder").replaceChildren();
    showError(null);
  }

  // -- one exchange: what was sent, then the response as it arrives ---------------------------

  function newTurn(shownInput) {
    const element = el("div", { class: "turn", "data-testid": "turn", "data-deltas": "0" },
      el("div", { class: "sent" }, shownInput.map(renderItem)),
      el("div", { class: "turn-head" },
        el("span", { "data-testid": "response-id", class: "muted" }, "sending…"), " ",
        el("span", { class: "status", "data-testid": "status" }, "sending")),
      el("div", { class: "output", "data-testid": "output" }),
      el("div", { class: "turn-foot" }));
    byTestId("transcript").append(element);
    return { element, items: new Map(), deltas: 0, finished: false };
  }

  function showResponse(turn, response) {
    const link = el("a", { href: `/console/responses/${encodeURIComponent(response.id)}`, "data-testid": "response-link" }, response.id);
    byTestId("response-id", turn.element).replaceChildren(link);
    const status = byTestId("status", turn.element);
    status.textContent = response.status;
    status.className = `status ${response.status}`;
  }

  function onEvent(turn, event) {
    switch (event.type) {
      case "response.created":
      case "response.queued":
      case "response.in_progress":
        showResponse(turn, event.response);
        break;
      case "response.output_item.added":
      case "response.output_item.done":
        placeItem(turn, event.output_index, event.item);
        break;
      case "response.reasoning_summary_part.added":
        // The summary's paragraphs are shown apart, as they are once the item is done.
        if (event.summary_index > 0) extend(turn, event.output_index, "item-text", "\n\n");
        break;
      case "response.completed":
      case "response.failed":
      case "response.incomplete":
        finish(turn, event.response);
        break;
      case "error":
        throw new Error(event.message || (event.error && event.error.message) || "The stream ended with an error.");
      default:
        if (event.type in DELTA_TARGETS) {
          extend(turn, event.output_index, DELTA_TARGETS[event.type], event.delta);
          turn.deltas += 1;
          turn.element.dataset.deltas = String(turn.deltas);
        }
        break;
    }
  }

  // Appends streamed text to the part of the item at `index` that it belongs to.
  function extend(turn, index, testId, text) {
    const item = turn.items.get(index);
    const part = item && byTestId(testId, item);
    if (part) part.append(text);
  }

  function placeItem(turn, index, item) {
    const element = renderItem(item);
    const old = turn.items.get(index);
    if (old) old.replaceWith(element);
    else byTestId("output", turn.element).append(element);
    turn.items.set(index, element);
  }

  // The response as it ended: its items, usage, any error, and what the user may answer.
  function finish(turn, response) {
    turn.finished = true;
    showResponse(turn, response);
    response.output.forEach((item, index) => placeItem(turn, index, item));
    const foot = turn.element.querySelector(".turn-foot");
    foot.replaceChildren();
    if (response.error) {
      foot.append(el("p", { class: "error", "data-testid": "response-error" }, response.error.message));
      showError(`The response failed: ${response.error.message}`);
    }
    if (response.incomplete_details) foot.append(el("p", { class: "muted" }, `Incomplete: ${response.incomplete_details.reason}`));
    if (response.usage) foot.append(usageLine(response.usage));
    const calls = response.output.filter((item) => item.type === "function_call");
    if (calls.length) foot.append(functionOutputForm(calls));
    for (const request of response.output.filter((item) => item.type === "mcp_approval_request")) foot.append(approvalButtons(request));
    if (response.status === "completed" || response.status === "incomplete") state.previousResponseId = response.id;
  }

  function usageLine(usage) {
    const cached = (usage.input_tokens_details || {}).cached_tokens;
    const reasoning = (usage.output_tokens_details || {}).reasoning_tokens;
    return el("p", { class: "usage muted", "data-testid": "usage" }, "Tokens: ",
      el("span", { "data-testid": "usage-input" }, usage.input_tokens), " input",
      cached ? ` (${cached} cached)` : "", " · ",
      el("span", { "data-testid": "usage-output" }, usage.output_tokens), " output",
      reasoning ? ` (${reasoning} reasoning)` : "", " · ",
      el("span", { "data-testid": "usage-total" }, usage.total_tokens), " total");
  }

  function functionOutputForm(calls) {
    const form = el("form", { class: "actions", "data-testid": "function-output-form" },
      calls.map((call) => el("label", {}, `Output of ${call.name} (${call.call_id})`,
        el("textarea", { rows: 2, "data-testid": "function-output", "data-call-id": call.call_id }))),
      el("button", { type: "submit", class: "primary", "data-testid": "send-function-output" }, "Send output"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const outputs = calls.map((call) => ({
        type: "function_call_output", call_id: call.call_id,
        output: form.querySelector(`[data-call-id="${CSS.escape(call.call_id)}"]`).value,
      }));
      send(outputs, outputs).then((sent) => sent && retire(form));
    });
    return form;
  }

  function approvalButtons(request) {
    const answer = (approve) => () => {
      const response = { type: "mcp_approval_response", approval_request_id: request.id, approve };
      send([response], [response]).then((sent) => sent && retire(buttons));
    };
    const buttons = el("div", { class: "actions", "data-testid": "approval" },
      `${request.server_label} · ${request.name}: `,
      el("button", { type: "button", class: "primary", "data-testid": "approve", onclick: answer(true) }, "Approve"), " ",
      el("button", { type: "button", "data-testid": "deny", onclick: answer(false) }, "Deny"));
    return buttons;
  }

  // An answer sent is final: its form or buttons no longer take another.
  function retire(actions) {
    actions.classList.remove("actions");
    for (const control of actions.querySelectorAll("button, textarea")) control.disabled = true;
  }

  // -- items, as plain escaped DOM --------------------------------------------------------------

  function renderItem(item) {
    const box = (label, ...children) => el("div", { class: `item ${item.role || ""} ${item.type}`.trim(), "data-testid": "item", "data-type": item.type || "message" },
      el("div", { class: "kind" }, label), ...children);
    const pre = (text, testId) => el("pre", { "data-testid": testId }, text);
    switch (item.type || "message") {
      case "message": {
        const parts = typeof item.content === "string" ? [{ type: "input_text", text: item.content }] : item.content || [];
        const text = parts.map((part) => part.text || part.refusal || "").join("");
        const citations = parts.flatMap((part) => part.annotations || []).map(citation);
        return box(item.role, el("div", { class: "text", "data-testid": "item-text" }, text),
          citations.length ? el("ul", { class: "citations" }, citations) : null);
      }
      case "reasoning":
        return box("reasoning",
          el("div", { class: "text", "data-testid": "item-text" }, (item.summary || []).map((part) => part.text).join("\n\n")),
          el("div", { class: "text muted", "data-testid": "item-reasoning" }, (item.content || []).map((part) => part.text).join("")));
      case "function_call":
        return box(`function call · ${item.name} · ${item.call_id}`, pre(item.arguments, "item-arguments"));
      case "function_call_output":
        return box(`function output · ${item.call_id}`, pre(typeof item.output === "string" ? item.output : JSON.stringify(item.output), "item-output"));
      case "mcp_list_tools":
        return box(`MCP tools · ${item.server_label}`, el("div", {}, (item.tools || []).map((tool) => tool.name).join(", ")),
          item.error ? el("p", { class: "error" }, item.error) : null);
      case "mcp_call":
        return box(`MCP call · ${item.server_label} · ${item.name}`, pre(item.arguments, "item-arguments"),
          item.output != null ? pre(item.output, "item-output") : null,
          item.error ? el("p", { class: "error", "data-testid": "item-error" }, typeof item.error === "string" ? item.error : JSON.stringify(item.error)) : null);
      case "mcp_approval_request":
        return box(`MCP approval requested · ${item.server_label} · ${item.name}`, pre(item.arguments, "item-arguments"));
      case "mcp_approval_response":
        return box(`MCP approval · ${item.approve ? "approved" : "denied"}`, item.reason ? el("div", {}, item.reason) : null);
      case "file_search_call":
        return box(`file search · ${item.status}`, el("div", {}, (item.queries || []).join(" · ")),
          item.results ? el("ul", {}, item.results.map((result) => el("li", {}, result.filename || result.file_id))) : null);
      case "web_search_call":
        return box(`web search · ${item.status}`, el("div", {}, (item.action && item.action.query) || ""));
      default:
        return box(item.type, pre(JSON.stringify(item, null, 2), "item-json"));
    }
  }

  function citation(annotation) {
    if (annotation.type === "url_citation" && /^https?:\/\//i.test(annotation.url)) {
      return el("li", {}, el("a", { href: annotation.url, rel: "noopener noreferrer", target: "_blank" }, annotation.title || annotation.url));
    }
    return el("li", {}, annotation.filename || annotation.file_id || annotation.url || annotation.type);
  }

  // -- wiring -----------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    byTestId("add-function").addEventListener("click", () => byTestId("function-list").append(functionEditor()));
    byTestId("add-mcp").addEventListener("click", () => byTestId("mcp-list").append(mcpEditor()));
    byTestId("start-over").addEventListener("click", startOver);
    for (const radio of document.querySelectorAll('[name="conversation_mode"]')) radio.addEventListener("change", startOver);
    byTestId("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = byTestId("input").value;
      if (!text.trim()) return;
      const message = { type: "message", role: "user", content: text };
      send([message], [message]);
    });
    document.body.dataset.playgroundReady = "true";
  });
})();
