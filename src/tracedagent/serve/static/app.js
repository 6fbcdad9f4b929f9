// The tracedagent page: talk to the served agent and draw each run's spans as they happen.
// No build step and no dependencies: the run's SSE stream (POST /v1/runs, Accept: text/event-stream)
// brings the stream events and the span events (run, model call, tool call) that the waterfall draws.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  spans: new Map(),   // span_id -> {kind, name, start, end, status, parent, depth, usage, cost, order}
  marks: [],          // interruptions to show in the waterfall: {at, text}
  t0: null,           // the first span's start (ns, server clock)
  lastServerNs: 0,    // the latest server timestamp seen, and when (performance.now()) we saw it
  lastSeenAt: 0,
  runId: null,
  pending: [],        // interruptions waiting for a decision
  decisions: {},
  answer: null,       // the assistant bubble being written
  busy: false,
  order: 0,
  timer: null,
};

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setStatus(text) {
  const status = $("status");
  status.textContent = text;
  status.className = "status " + text;
}

function say(role, text) {
  const node = el("div", "msg " + role, text);
  $("messages").appendChild(node);
  node.scrollIntoView({block: "end"});
  return node;
}

// ------------------------------------------------------------------------------------- the stream

async function post(url, body, onEvent) {
  const response = await fetch(url, {
    method: "POST",
    headers: {"content-type": "application/json", "accept": "text/event-stream"},
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let type = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;  // a keep-alive comment
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(type, JSON.parse(data.join("\n")));
    }
  }
}

// ------------------------------------------------------------------------------------- the spans

function seen(ns) {
  if (typeof ns === "number" && ns > state.lastServerNs) {
    state.lastServerNs = ns;
    state.lastSeenAt = performance.now();
  }
}

function serverNow() {
  return state.lastServerNs + (performance.now() - state.lastSeenAt) * 1e6;
}

function open(ev, kind, name) {
  seen(ev.timestamp_ns);
  if (state.t0 === null) state.t0 = ev.timestamp_ns;
  const parent = state.spans.get(ev.parent_span_id);
  state.spans.set(ev.span_id, {
    kind, name, start: ev.timestamp_ns, end: null, status: "running", parent: ev.parent_span_id,
    depth: parent ? parent.depth + 1 : 0, usage: null, order: state.order++, runId: ev.run_id,
  });
  if (kind === "run" || kind === "resume") $("trace-id").textContent = "trace " + ev.trace_id;
}

function close(ev) {
  seen(ev.timestamp_ns);
  const span = state.spans.get(ev.span_id);
  if (!span) return;
  span.end = ev.timestamp_ns;
  span.duration = ev.duration_s;
  span.status = ev.status;
  if (ev.usage) span.usage = ev.usage;
  if (ev.error) span.error = ev.error.type + ": " + ev.error.message;
}

function fmtDuration(seconds) {
  if (seconds === undefined || seconds === null) return "";
  if (seconds < 0.001) return (seconds * 1e6).toFixed(0) + " µs";
  if (seconds < 1) return (seconds * 1e3).toFixed(1) + " ms";
  return seconds.toFixed(2) + " s";
}

function fmtUsage(usage) {
  if (!usage) return "";
  let text = usage.input_tokens + "→" + usage.output_tokens + " tok";
  if (usage.cost_usd !== null && usage.cost_usd !== undefined) text += " · $" + usage.cost_usd.toFixed(4);
  return text;
}

function draw() {
  const box = $("waterfall");
  box.textContent = "";
  if (state.t0 === null) return;
  const now = serverNow();
  let last = state.t0;
  for (const span of state.spans.values()) last = Math.max(last, span.end === null ? now : span.end);
  const total = Math.max(last - state.t0, 1e6);
  const axis = el("div", "wf-axis");
  axis.appendChild(el("span", "", "span"));
  const scale = el("span", "scale");
  for (let i = 0; i <= 4; i++) scale.appendChild(el("span", "", fmtDuration((total * i) / 4 / 1e9)));
  axis.appendChild(scale);
  axis.appendChild(el("span", "", "duration · status · tokens"));
  box.appendChild(axis);
  const rows = [...state.spans.entries()].sort((a, b) => a[1].start - b[1].start || a[1].order - b[1].order);
  for (const [id, span] of rows) {
    const row = el("div", "wf-row");
    row.dataset.kind = span.kind;
    row.dataset.status = span.status;
    row.dataset.span = id;
    const label = el("div", "wf-label");
    label.style.paddingLeft = span.depth * 14 + "px";
    label.appendChild(el("span", "kind", span.kind));
    label.appendChild(document.createTextNode(span.name));
    label.title = span.name + (span.error ? "\n" + span.error : "");
    const track = el("div", "wf-track");
    const bar = el("div", "wf-bar");
    const end = span.end === null ? now : span.end;
    bar.style.left = ((span.start - state.t0) / total) * 100 + "%";
    bar.style.width = Math.max(((end - span.start) / total) * 100, 0.4) + "%";
    track.appendChild(bar);
    const meta = el("div", "wf-meta");
    const seconds = span.end === null ? (now - span.start) / 1e9 : span.duration;
    meta.appendChild(document.createTextNode(fmtDuration(seconds) + " · "));
    meta.appendChild(el("span", "st " + span.status, span.status));
    const usage = fmtUsage(span.usage);
    if (usage) meta.appendChild(document.createTextNode(" · " + usage));
    meta.title = meta.textContent;
    row.append(label, track, meta);
    box.appendChild(row);
  }
  for (const mark of state.marks) {
    const row = el("div", "wf-mark");
    row.append(el("span", "", "paused: " + mark.text), el("span"), el("span", "", "waiting for a decision"));
    box.appendChild(row);
  }
}

function tick() {
  draw();
  const running = [...state.spans.values()].some((s) => s.end === null);
  state.timer = running ? setTimeout(tick, 100) : null;
}

function redraw() {
  if (state.timer === null) state.timer = setTimeout(tick, 0);
}

// ------------------------------------------------------------------------------------- the events

function onEvent(type, ev) {
  switch (type) {
    case "run_started": open(ev, "run", ev.agent); break;
    case "run_resumed": open(ev, "resume", ev.agent); state.marks = []; break;
    case "model_call_started":
      open(ev, "model", ev.provider + ":" + ev.model + (ev.purpose === "compaction" ? " (compaction)" : " #" + (ev.turn + 1)));
      break;
    case "tool_call_started": open(ev, "tool", ev.tool + " " + ev.call_id); break;
    case "model_call_ended": case "tool_call_ended": case "run_ended": close(ev); break;
    case "text_delta":
      if (!state.answer) state.answer = say("assistant", "");
      state.answer.textContent += ev.text;
      break;
    case "usage_updated": $("totals").textContent = "run: " + fmtUsage(ev.total); break;
    case "run_interrupted":
      seen(ev.timestamp_ns);
      for (const call of ev.interruptions) state.marks.push({text: call.tool + " " + call.id});
      break;
    case "final_result": finish(ev); break;
    case "error": say("error", ev.type + ": " + ev.message); setStatus("error"); break;
    default: break;
  }
  redraw();
}

function finish(result) {
  state.runId = result.run_id;
  setStatus(result.status);
  $("totals").textContent = "run: " + fmtUsage(result.usage) + " · " + fmtDuration(result.duration_s);
  if (result.status === "completed" && !state.answer && result.output !== null) say("assistant", String(result.output));
  if (result.status === "failed" && result.error) say("error", result.error.type + ": " + result.error.message);
  if (result.status === "interrupted") ask(result.interruptions);
}

// ------------------------------------------------------------------------------------- approvals

function ask(calls) {
  state.pending = calls;
  state.decisions = {};
  const box = $("approvals");
  box.textContent = "";
  box.hidden = false;
  for (const call of calls) {
    const row = el("div", "approval");
    row.dataset.call = call.id;
    const what = el("div", "what");
    what.appendChild(el("strong", "", call.tool));
    what.appendChild(document.createTextNode(" " + (call.kind === "approval" ? "needs approval " : "needs its result ")));
    what.appendChild(el("code", "", call.arguments));
    row.appendChild(what);
    if (call.kind === "approval") {
      const yes = el("button", "approve", "Approve");
      const no = el("button", "deny", "Deny");
      yes.type = no.type = "button";
      yes.onclick = () => decide(call.id, true, row);
      no.onclick = () => decide(call.id, false, row);
      row.append(yes, no);
    } else {
      const input = el("input");
      input.placeholder = "result";
      const give = el("button", "approve", "Send result");
      give.type = "button";
      give.onclick = () => decide(call.id, {result: input.value}, row);
      row.append(input, give);
    }
    box.appendChild(row);
  }
}

async function decide(callId, decision, row) {
  for (const button of row.querySelectorAll("button")) button.disabled = true;
  state.decisions[callId] = decision;
  if (Object.keys(state.decisions).length < state.pending.length) return;
  const approvals = {};
  const results = {};
  for (const call of state.pending) {
    const d = state.decisions[call.id];
    if (call.kind === "approval") approvals[call.id] = d === true ? {approved: true} : {approved: false, reason: "denied on the page"};
    else results[call.id] = d.result;
  }
  $("approvals").hidden = true;
  say("note", Object.values(approvals).every((a) => a.approved) ? "approved" : "decided");
  await go("/v1/runs/" + encodeURIComponent(state.runId) + "/resume", {approvals, results});
}

// ------------------------------------------------------------------------------------- asking

async function go(url, body) {
  state.busy = true;
  $("send").disabled = true;
  setStatus("running");
  state.answer = null;
  try {
    await post(url, body, onEvent);
  } catch (err) {
    say("error", String(err.message || err));
    setStatus("error");
  } finally {
    state.busy = false;
    $("send").disabled = false;
    redraw();
  }
}

$("ask").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || state.busy) return;
  $("prompt").value = "";
  say("user", text);
  state.spans.clear();
  state.marks = [];
  state.t0 = null;
  $("approvals").hidden = true;
  await go("/v1/runs", {input: text, session_id: sessionId});
});

$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $("ask").requestSubmit();
  }
});

const sessionId = "page-" + Math.random().toString(16).slice(2);
fetch("healthz").then((r) => r.json()).then((h) => { $("agent").textContent = h.agent; }).catch(() => {});
