// The responses pages: live status of queued and running responses, cancelling, the time
// filters in local time, and a response's event stream, followed live and replayed.
"use strict";

const LIVE = ["queued", "in_progress"];
const POLL_MS = 800;
const REPLAY_STEP_MS = 40;

function showStatus(badge, status) {
  badge.textContent = status;
  badge.className = "status " + status;
}

function showError(message) {
  const error = document.querySelector("[data-testid=action-error]");
  if (!error) return;
  error.textContent = message;
  error.hidden = false;
}

// -- cancelling ------------------------------------------------------------------------

async function cancel(button) {
  button.disabled = true;
  try {
    const response = await threadline.api(`/console/api/responses/${encodeURIComponent(button.dataset.cancel)}/cancel`, { method: "POST" });
    const scope = button.closest("[data-testid=response-row]") || document;
    showStatus(scope.querySelector("[data-testid=status]"), response.status);
    button.remove();
  } catch (error) {
    button.disabled = false;
    showError(`Could not cancel ${button.dataset.cancel}: ${error.message}`);
  }
}

// -- the list --------------------------------------------------------------------------

// Queued and running rows are read again until they finish.
async function followRows() {
  const rows = document.querySelectorAll("[data-testid=response-row][data-live]");
  await Promise.all([...rows].map(async (row) => {
    try {
      const summary = await threadline.api(`/console/api/responses/${encodeURIComponent(row.dataset.id)}`);
      showStatus(row.querySelector("[data-testid=status]"), summary.status);
      if (!LIVE.includes(summary.status)) {
        row.removeAttribute("data-live");
        row.querySelector("[data-cancel]")?.remove();
      }
    } catch (error) {
      if (error.status === 404) row.removeAttribute("data-live");
    }
  }));
  if (document.querySelector("[data-testid=response-row][data-live]")) setTimeout(followRows, POLL_MS);
}

// The time filters travel as Unix seconds; the viewer picks them in local time.
function localTimeFilters(form) {
  const pad = (number) => String(number).padStart(2, "0");
  for (const picker of form.querySelectorAll("[data-unix-field]")) {
    const hidden = form.elements[picker.dataset.unixField];
    if (hidden.value && /^\d+$/.test(hidden.value)) {
      const date = new Date(Number(hidden.value) * 1000);
      picker.value = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
    }
  }
  form.addEventListener("submit", () => {
    for (const picker of form.querySelectorAll("[data-unix-field]")) {
      form.elements[picker.dataset.unixField].value = picker.value ? String(Math.floor(new Date(picker.value).getTime() / 1000)) : "";
    }
  });
}

// -- a response's events ---------------------------------------------------------------

function eventDetail(event) {
  if (typeof event.delta === "string") return JSON.stringify(event.delta.length > 80 ? event.delta.slice(0, 80) + "…" : event.delta);
  if (event.item) return event.item.type;
  if (event.part) return event.part.type;
  if (event.response) return event.response.status;
  return "";
}

class EventPlayer {
  constructor(section) {
    this.responseId = section.dataset.eventsFor;
    this.list = section.querySelector("[data-testid=event-list]");
    this.text = section.querySelector("[data-testid=replay-text]");
    this.count = section.querySelector("[data-testid=event-count]");
    this.now = section.querySelector("[data-testid=replay-now]");
    this.events = [];
    this.playing = null;
    section.querySelector("[data-testid=replay]").addEventListener("click", () => this.replay());
  }

  // Reads the events after the last one held; while the response runs, again and again,
  // each new event shown as it comes.
  async load(live) {
    const after = this.events.length ? this.events[this.events.length - 1].sequence_number : -1;
    let answer;
    try {
      answer = await threadline.api(`/console/api/responses/${encodeURIComponent(this.responseId)}/events?after=${after}`);
    } catch (error) {
      this.count.textContent = `Events could not be read: ${error.message}`;
      return;
    }
    for (const event of answer.data) {
      this.events.push(event);
      this.list.append(threadline.el("li", { "data-type": event.type, value: event.sequence_number }, event.type, threadline.el("span", { class: "detail" }, eventDetail(event))));
      if (live && this.playing === null) this.apply(event);
    }
    this.count.textContent = `${this.events.length} events${answer.done ? "" : ", more to come"}`;
    if (!answer.done) setTimeout(() => this.load(live), answer.data.length ? 0 : POLL_MS);
  }

  // One event's effect on the text being built: the output text grows by its deltas.
  apply(event) {
    if (event.type === "response.output_text.delta" || event.type === "response.refusal.delta") this.text.append(event.delta);
    this.now.textContent = event.type;
  }

  // Plays the events held so far in order, from an empty text.
  replay() {
    clearTimeout(this.playing);
    this.text.textContent = "";
    let index = 0;
    const items = this.list.children;
    const step = () => {
      for (const item of items) item.classList.remove("playing");
      if (index >= this.events.length) {
        this.playing = null;
        return;
      }
      items[index].classList.add("playing");
      items[index].scrollIntoView({ block: "nearest" });
      this.apply(this.events[index]);
      index += 1;
      this.playing = setTimeout(step, REPLAY_STEP_MS);
    };
    step();
  }
}

// A running response's page is read again until it ends, then shown as it ended.
async function followResponse(article) {
  try {
    const summary = await threadline.api(`/console/api/responses/${encodeURIComponent(article.dataset.response)}`);
    showStatus(article.querySelector("h1 [data-testid=status]"), summary.status);
    if (!LIVE.includes(summary.status)) {
      article.querySelector("h1 [data-cancel]")?.remove();
      window.location.reload();
      return;
    }
  } catch (error) {
    if (error.status === 404) return;
  }
  setTimeout(() => followResponse(article), POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("[data-cancel]")) button.addEventListener("click", () => cancel(button));
  const filters = document.querySelector("form.filters");
  if (filters) localTimeFilters(filters);
  if (document.querySelector("[data-testid=response-row][data-live]")) setTimeout(followRows, POLL_MS);
  const article = document.querySelector("article.response");
  if (article) {
    const live = article.hasAttribute("data-live");
    new EventPlayer(article.querySelector("[data-testid=events]")).load(live);
    if (live) setTimeout(() => followResponse(article), POLL_MS);
  }
});
