// The chat page: keeps the conversation in `history`, sends it to /v1/chat/completions with
// stream: true and shows the reply as the server-sent events arrive. Stop aborts the fetch (the
// server then stops generating); the partial reply stays in the history.
"use strict";
const $ = (id) => document.getElementById(id);
const history = [];
let controller = null;
let chatId = 0;          // bumped by New chat, so a reply that ends later is not added to the new chat

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "You" : role === "assistant" ? "Assistant" : "Error";
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.append(who, body);
  $("messages").append(div);
  scrollDown();
  return div;
}

function scrollDown() {
  const m = $("messages");
  m.scrollTop = m.scrollHeight;
}

function setBusy(busy, status) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
  $("status").textContent = status;
}

function requestBody() {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  const body = { messages: messages.concat(history), stream: true };
  const t = parseFloat($("temperature").value);
  if (!Number.isNaN(t)) body.temperature = t;
  const n = parseInt($("max-tokens").value, 10);
  if (n > 0) body.max_tokens = n;
  return body;
}

// Yields each parsed `data:` payload of an SSE response body ("[DONE]" ends it).
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

async function send(text) {
  const id = chatId;
  history.push({ role: "user", content: text });
  addMessage("user", text);
  const bubble = addMessage("assistant", "");
  const out = bubble.querySelector(".text");
  bubble.dataset.state = "streaming";
  bubble.setAttribute("aria-busy", "true");    // screen readers read the reply once, when complete
  controller = new AbortController();
  setBusy(true, "Generating…");
  const headers = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  let reply = "";
  let state = "done";
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers, body: JSON.stringify(requestBody()), signal: controller.signal });
    if (!r.ok) {
      const err = await r.json().catch(() => ({}));
      throw new Error(err.error ? err.error.message : `HTTP ${r.status}`);
    }
    for await (const ev of events(r)) {
      if (ev.error) throw new Error(ev.error.message);
      const delta = ev.choices && ev.choices[0] && ev.choices[0].delta;
      if (delta && delta.content) {
        reply += delta.content;
        out.textContent = reply;
        scrollDown();
      }
    }
  } catch (e) {
    if (e.name === "AbortError") {
      state = "stopped";
    } else {
      state = "error";
      bubble.classList.add("error");
      out.textContent = reply + (reply ? "\n" : "") + `[${e.message}]`;
    }
  }
  bubble.dataset.state = state;
  bubble.setAttribute("aria-busy", "false");
  if (id === chatId) {
    if (reply) history.push({ role: "assistant", content: reply });
    else history.pop();            // nothing came back: forget the question too
  }
  controller = null;
  setBusy(false, state === "stopped" ? "Stopped" : state === "error" ? "Error" : "Ready");
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("input").value.trim();
  if (!text || controller) return;
  $("input").value = "";
  send(text);
});

// Enter sends; Shift+Enter inserts a newline (the textarea's default); Escape stops a reply
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && controller) controller.abort();
});

$("stop").addEventListener("click", () => { if (controller) controller.abort(); });

$("reset").addEventListener("click", () => {
  if (controller) controller.abort();
  chatId += 1;
  history.length = 0;
  $("messages").replaceChildren();
  $("status").textContent = "Ready";
  $("input").focus();
});

fetch("/health").then((r) => r.json()).then((h) => { $("model").textContent = h.model; }).catch(() => {});
$("input").focus();
