// The console's shared helpers: JSON and event streams from /console/api, and local times.
"use strict";

const threadline = {
  // JSON from the console's API; throws an Error carrying OpenAI's error message.
  async api(path, options = {}) {
    const init = { method: options.method || "GET", headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (options.body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    const answer = await fetch(path, init);
    const text = await answer.text();
    const data = text ? JSON.parse(text) : null;
    if (!answer.ok) {
      const error = new Error((data && data.error && data.error.message) || answer.statusText);
      error.status = answer.status;
      throw error;
    }
    return data;
  },

  // POSTs `body` and calls onEvent with each server-sent event's data, parsed, in order.
  async stream(path, body, onEvent, signal) {
    const answer = await fetch(path, {
      method: "POST", credentials: "same-origin", signal,
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
    });
    if (!answer.ok) {
      const data = await answer.json().catch(() => null);
      const error = new Error((data && data.error && data.error.message) || answer.statusText);
      error.status = answer.status;
      throw error;
    }
    const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      let end;
      while ((end = buffered.indexOf("\n\n")) >= 0) {
        const block = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const data = block.split("\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trimStart()).join("\n");
        if (data && data !== "[DONE]") onEvent(JSON.parse(data));
      }
    }
  },

  // An element with attributes and children (strings become text: never parsed as HTML).
  el(tag, attributes = {}, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
      else element.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) element.append(child instanceof Node ? child : String(child));
    }
    return element;
  },

  // A Unix time (seconds) as the viewer's local date and time.
  localTime(seconds) {
    return new Date(seconds * 1000).toLocaleString();
  },
};

// Times rendered by the server as <time data-unix="..."> are shown in local time.
document.addEventListener("DOMContentLoaded", () => {
  for (const element of document.querySelectorAll("time[data-unix]")) {
    element.textContent = threadline.localTime(Number(element.dataset.unix));
  }
});
