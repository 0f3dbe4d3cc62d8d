// A conversation's page: the next page of items loads as the reader nears the end (or with the
// "Load more" button), and the metadata form saves through /console/api.
"use strict";

// Appends the page of items named by `more` (a server-rendered fragment) in its place.
async function loadMore(more) {
  if (more.dataset.loading) return;
  more.dataset.loading = "1";
  const button = more.querySelector("button");
  button.disabled = true;
  button.textContent = "Loading…";
  try {
    const answer = await fetch(more.dataset.next, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (answer.redirected) throw new Error("Your sign-in has ended: reload the page to sign in again.");
    const html = await answer.text();
    if (!answer.ok) throw new Error(`Items could not be loaded (${answer.status}).`);
    // The fragment is this server's own rendering, every value in it already escaped.
    const fragment = document.createRange().createContextualFragment(html);
    const next = fragment.querySelector("[data-testid=more]");
    more.replaceWith(fragment);
    if (next) watch(next);
  } catch (error) {
    delete more.dataset.loading;
    button.disabled = false;
    button.textContent = "Load more";
    more.append(threadline.el("span", { class: "error", role: "alert" }, " " + error.message));
  }
}

const nearTheEnd = "IntersectionObserver" in window
  ? new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (entry.isIntersecting) {
          nearTheEnd.unobserve(entry.target);
          loadMore(entry.target);
        }
      }
    }, { rootMargin: "0px 0px 600px 0px" })
  : null;

function watch(more) {
  more.querySelector("button").addEventListener("click", () => loadMore(more));
  if (nearTheEnd) nearTheEnd.observe(more);
}

// --- Metadata -------------------------------------------------------------------------------

function metadataRows(form) {
  return [...form.querySelectorAll("[data-testid=metadata-row]")];
}

function addRow(form, key = "", value = "") {
  const row = document.getElementById("metadata-row").content.firstElementChild.cloneNode(true);
  row.querySelector("[name=key]").value = key;
  row.querySelector("[name=value]").value = value;
  form.querySelector("[data-testid=metadata-rows]").append(row);
  return row;
}

// The form's pairs, in order; rows left blank are skipped. Throws on a key given twice.
function metadataOf(form) {
  const metadata = {};
  for (const row of metadataRows(form)) {
    const key = row.querySelector("[name=key]").value;
    const value = row.querySelector("[name=value]").value;
    if (key === "" && value === "") continue;
    if (Object.hasOwn(metadata, key)) throw new Error(`The key '${key}' is given twice.`);
    metadata[key] = value;
  }
  return metadata;
}

async function saveMetadata(form) {
  const status = form.querySelector("[data-testid=metadata-status]");
  const alert = form.querySelector("[data-testid=metadata-error]");
  alert.hidden = true;
  status.textContent = "Saving…";
  try {
    const id = form.dataset.conversationId;
    const saved = await threadline.api(`/console/api/conversations/${encodeURIComponent(id)}`, { method: "POST", body: { metadata: metadataOf(form) } });
    for (const row of metadataRows(form)) row.remove();
    for (const [key, value] of Object.entries(saved.metadata)) addRow(form, key, value);
    status.textContent = "Saved.";
  } catch (error) {
    status.textContent = "";
    alert.textContent = error.message;
    alert.hidden = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const more = document.querySelector("[data-testid=more]");
  if (more) watch(more);

  const form = document.getElementById("metadata-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    saveMetadata(form);
  });
  form.addEventListener("click", (event) => {
    if (event.target.closest("[data-remove]")) event.target.closest("[data-testid=metadata-row]").remove();
    if (event.target.closest("[data-add]")) addRow(form).querySelector("[name=key]").focus();
  });
  form.addEventListener("input", () => { form.querySelector("[data-testid=metadata-status]").textContent = ""; });
});
