// The steerscope playground page: settings -> POST /api/steer -> a stream of events -> columns of text.
// Plain script, no framework and no build step; every text reaches the page through textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, controller: null, result: null, view: "steer", runs: 0, timer: null };

function option(select, value, text, disabled = false) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  o.disabled = disabled;
  select.append(o);
  return o;
}

function showError(message) {
  $("error").textContent = message || "";
}

function status(message) {
  $("status").textContent = message || "";
}

async function getJSON(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${res.status}: ${(await res.json().catch(() => ({}))).detail || res.statusText}`);
  return res.json();
}

// --- settings -----------------------------------------------------------------------------------------

function fitControls(prefix) {
  // One set of fit controls (pairs, method, site, pairs used, read) per vector, ids prefixed with a- or b-.
  const controls = $("fit-template").content.cloneNode(true);
  for (const el of controls.querySelectorAll("[data-id]")) el.id = `${prefix}-${el.dataset.id}`;
  for (const el of controls.querySelectorAll("[data-for]")) el.htmlFor = `${prefix}-${el.dataset.for}`;
  $(`${prefix}-fit`).replaceChildren(controls);
}

function fillVectorControls(prefix, info, files) {
  fitControls(prefix);
  const source = $(`${prefix}-source`);
  source.replaceChildren();
  option(source, "fit", "fit here from contrast pairs");
  for (const f of files) {
    const what = f.problem ? `(cannot be used: ${f.problem})` : `${f.method || "vector"} at ${f.sites.join(", ")}`;
    option(source, `file:${f.name}`, `file ${f.name} ${what}`, Boolean(f.problem));
  }
  const pairs = $(`${prefix}-pairs`);
  pairs.replaceChildren();
  for (const name of info.pair_sets) option(pairs, name, `${name} (built-in)`);
  const method = $(`${prefix}-method`);
  method.replaceChildren();
  for (const m of info.methods) option(method, m.name, m.name).title = m.summary;
  method.value = "mean_diff";
  const site = $(`${prefix}-site`);
  site.replaceChildren();
  for (const s of info.sites) option(site, s, s);
  site.value = info.default_site;
  source.addEventListener("change", () => syncVector(prefix));
  method.addEventListener("change", () => syncVector(prefix));
  syncVector(prefix);
}

function syncVector(prefix) {
  const fitting = $(`${prefix}-source`).value === "fit";
  $(`${prefix}-fit`).hidden = !fitting;
  const spec = state.info.methods.find((m) => m.name === $(`${prefix}-method`).value);
  if (!spec) return;
  const n = $(`${prefix}-n`);
  n.min = spec.min_pairs;
  if (spec.max_pairs !== null) n.max = spec.max_pairs;
  else n.removeAttribute("max");
  if (spec.max_pairs !== null && Number(n.value) > spec.max_pairs) n.value = spec.max_pairs;
  if (Number(n.value) < spec.min_pairs) n.value = spec.min_pairs;
  const read = $(`${prefix}-read`);
  const before = read.value;
  read.replaceChildren();
  for (const r of spec.reads) option(read, r, r);
  if (!spec.reads.length) option(read, "", "every position (no read)");
  read.disabled = !spec.reads.length;
  if (spec.reads.includes(before)) read.value = before;
}

function vectorChoice(prefix) {
  const source = $(`${prefix}-source`).value;
  if (source.startsWith("file:")) return { file: source.slice(5) };
  const choice = {
    pairs: $(`${prefix}-pairs`).value,
    method: $(`${prefix}-method`).value,
    site: $(`${prefix}-site`).value,
    n_pairs: Number.parseInt($(`${prefix}-n`).value, 10),
  };
  if (!$(`${prefix}-read`).disabled) choice.read = $(`${prefix}-read`).value;
  return choice;
}

function number(id) {
  const value = Number($(id).value);
  if ($(id).value.trim() === "" || !Number.isFinite(value)) throw new Error(`${$(id).labels[0].textContent.trim()}: give a number`);
  return value;
}

function request(coefficients) {
  const body = {
    prompt: $("prompt").value,
    vector: vectorChoice("a"),
    coefficients,
    positions: $("positions").value,
    max_new_tokens: number("max-new"),
    sample: $("sample").checked,
    seed: number("seed"),
    repetition_penalty: number("rep"),
  };
  if ($("use-b").checked) body.second = { vector: vectorChoice("b"), coefficient: number("b-coef") };
  return body;
}

// --- streams ------------------------------------------------------------------------------------------

async function stream(body, onEvent, signal) {
  const res = await fetch("/api/steer", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  if (!res.ok) {
    const detail = (await res.json().catch(() => ({}))).detail || res.statusText;
    throw new Error(`refused (HTTP ${res.status}): ${detail}`);
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const chunk = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of chunk.split("\n")) if (line.startsWith("data: ")) onEvent(JSON.parse(line.slice(6)));
    }
  }
}

function makeColumn(container, index, label, steered) {
  const col = document.createElement("article");
  col.className = "column";
  col.dataset.column = index;
  col.dataset.state = "waiting";
  col.dataset.steered = String(steered);
  const h = document.createElement("h3");
  h.textContent = label;
  const pre = document.createElement("pre");
  pre.className = "text";
  const prompt = document.createElement("span");
  prompt.className = "prompt";
  prompt.textContent = $("prompt").value;
  const text = document.createElement("span");
  text.className = "completion";
  pre.append(prompt, text);
  const numbers = document.createElement("div");
  numbers.className = "numbers";
  col.append(h, pre, numbers);
  container.append(col);
  return col;
}

function fmt(x, digits = 3) {
  return x === null || x === undefined ? "-" : Number(x).toFixed(digits);
}

function showNumbers(col, event, unsteered) {
  const rows = [`fluency: ${fmt(event.fluency_ce)} nats/token under the unsteered model`];
  if (unsteered && event.coefficient !== null && unsteered.fluency_ce !== null && event.fluency_ce !== null) {
    const d = event.fluency_ce - unsteered.fluency_ce;
    rows.push(`fluency cost: ${d >= 0 ? "+" : ""}${fmt(d)} nats/token vs unsteered`);
  }
  const scores = Object.entries(event.scores || {});
  if (scores.length) rows.push(`concept scores: ${scores.map(([name, value]) => `${name} ${fmt(value)}`).join(" · ")}`);
  if (event.cached) rows.push("(unsteered text from the cache: same prompt and decoding)");
  col.querySelector(".numbers").replaceChildren(...rows.map((r) => Object.assign(document.createElement("div"), { textContent: r })));
}

async function generate(coefficients, container) {
  showError("");
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  let body;
  try {
    body = request(coefficients);
  } catch (err) {
    showError(err.message);
    return;
  }
  $("download").disabled = true;
  container.replaceChildren();
  container.dataset.state = "running";
  const columns = {};
  const done = {};
  status("sending ...");
  try {
    await stream(
      body,
      (event) => {
        if (controller.signal.aborted) return;
        if (event.type === "queued") status(event.ahead ? `queued: ${event.ahead} request(s) ahead` : "running ...");
        else if (event.type === "status") status(event.message);
        else if (event.type === "columns") {
          event.labels.forEach((label, i) => {
            columns[i] = makeColumn(container, i, label, i > 0);
          });
        } else if (event.type === "start") {
          columns[event.column].dataset.state = "running";
          status(`generating ${event.label} ...`);
        } else if (event.type === "token") {
          columns[event.column].querySelector(".completion").textContent = event.text;
        } else if (event.type === "done") {
          const col = columns[event.column];
          col.querySelector(".completion").textContent = event.text;
          col.dataset.state = "done";
          col.dataset.coefficient = event.coefficient === null ? "" : String(event.coefficient);
          done[event.column] = event;
          showNumbers(col, event, done[0]);
          if (event.column === 0) for (const [i, other] of Object.entries(done)) if (i !== "0") showNumbers(columns[i], other, event);
        } else if (event.type === "result") {
          state.result = event.result;
          $("download").disabled = false;
          status(`done in ${fmt(Math.max(...Object.values(done).map((d) => d.seconds)), 2)} s`);
        } else if (event.type === "error") showError(event.message);
      },
      controller.signal,
    );
    if (!controller.signal.aborted) {
      container.dataset.state = "done";
      state.runs += 1;
      document.body.dataset.runs = String(state.runs);
    }
  } catch (err) {
    if (err.name === "AbortError") return;
    container.dataset.state = "error";
    status("");
    showError(err.message);
  }
}

function steerNow() {
  const c = Number($("coef").value);
  generate([c], $("steer-columns"));
}

function sweepNow() {
  const parts = $("sweep-coefs").value.split(",").map((s) => s.trim()).filter(Boolean);
  const coefficients = parts.map(Number);
  if (!coefficients.length || coefficients.some((c) => !Number.isFinite(c))) {
    showError("coefficients of A: give numbers separated by commas, e.g. -8, -4, 4, 8");
    return;
  }
  generate(coefficients, $("sweep-columns"));
}

// --- uploads, results, download ---------------------------------------------------------------------

async function upload() {
  const file = $("upload").files[0];
  if (!file) return;
  showError("");
  try {
    const text = await file.text();
    const res = await fetch("/api/pairs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: file.name, text }),
    });
    const got = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(`upload refused (HTTP ${res.status}): ${got.detail || res.statusText}`);
    for (const prefix of ["a", "b"]) {
      const o = option($(`${prefix}-pairs`), got.key, `${got.name} (uploaded, ${got.n_pairs} pairs)`);
      if (prefix === "a") $("a-pairs").value = o.value;
    }
    status(`uploaded ${got.name}: ${got.n_pairs} train pairs`);
  } catch (err) {
    showError(err.message);
  } finally {
    $("upload").value = "";
  }
}

function runPath(name, file) {
  return `/runs/${[...name.split("/"), file].map(encodeURIComponent).join("/")}`;
}

async function showRuns() {
  const list = $("runs");
  list.replaceChildren();
  if (!state.info.has_runs) {
    list.append(Object.assign(document.createElement("li"), { textContent: "no --runs folder (start with --runs DIR)" }));
    return;
  }
  const { runs } = await getJSON("/api/runs");
  if (!runs.length) list.append(Object.assign(document.createElement("li"), { textContent: "no finished runs yet" }));
  for (const run of runs) {
    const li = document.createElement("li");
    li.append(document.createTextNode(run.name), document.createElement("br"));
    li.append(Object.assign(document.createElement("span"), { className: "kind", textContent: run.kind }));
    for (const f of run.files.filter((name) => name !== "index.html")) {
      li.append(Object.assign(document.createElement("a"), { href: runPath(run.name, f), target: "_blank", textContent: f }));
    }
    li.addEventListener("click", (e) => {
      if (e.target.tagName === "A") return;
      for (const other of list.children) other.classList.remove("active");
      li.classList.add("active");
      $("report").src = run.report ? runPath(run.name, "index.html") : "about:blank";
    });
    list.append(li);
  }
}

function download() {
  if (!state.result) return;
  const blob = new Blob([JSON.stringify(state.result, null, 2)], { type: "application/json" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = "steerscope-result.json";
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function show(view) {
  state.view = view;
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.view === view);
  for (const name of ["steer", "sweep", "results"]) $(`view-${name}`).hidden = name !== view;
  $("settings").hidden = view === "results";
  if (view === "results") showRuns().catch((err) => showError(err.message));
}

// --- start --------------------------------------------------------------------------------------------

async function start() {
  const info = await getJSON("/api/info");
  state.info = info;
  $("model").textContent = `${info.model} · ${info.n_layers} layers · d_model ${info.d_model}`;
  const files = info.has_vectors ? (await getJSON("/api/vectors")).vectors : [];
  fillVectorControls("a", info, files);
  fillVectorControls("b", info, files);
  for (const p of info.positions) option($("positions"), p, p);
  $("max-new").max = info.limits.max_new_tokens;
  $("coef").addEventListener("input", () => {
    $("coef-value").textContent = $("coef").value;
  });
  $("coef").addEventListener("change", () => {
    clearTimeout(state.timer);
    if ($("prompt").value.trim() && state.view === "steer") state.timer = setTimeout(steerNow, 300);
  });
  $("settings").addEventListener("submit", (e) => {
    e.preventDefault();
    if (state.view === "sweep") sweepNow();
    else steerNow();
  });
  $("sweep-go").addEventListener("click", sweepNow);
  $("upload").addEventListener("change", upload);
  $("download").addEventListener("click", download);
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => show(tab.dataset.view));
  document.body.dataset.ready = "true";
}

start().catch((err) => showError(`could not start: ${err.message}`));
