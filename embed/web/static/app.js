// The search page: upload (or drop, or pick a scene) -> POST /api/search -> boxes + rows of matches.
"use strict";
const $ = (s) => document.querySelector(s);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};
const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"];
let maxBytes = 20 * 1024 * 1024;
let photoUrl = null;
window.lastSearch = null; // for tests and the curious: {ms, response}

function showError(msg) {
  const e = $("#error");
  e.textContent = msg;
  e.hidden = !msg;
}
function setStatus(msg) { $("#status").textContent = msg; }

async function api(url, opts) {
  let resp;
  try {
    resp = await fetch(url, opts);
  } catch (err) {
    throw new Error("The page cannot reach its server. Is `embed web` (or `shardproxy dev up`) still running?");
  }
  let body = null;
  try { body = await resp.json(); } catch (err) { /* not JSON */ }
  if (!resp.ok) throw new Error((body && body.message) || `The server answered ${resp.status}.`);
  return body;
}

async function loadConfig() {
  const cfg = await api("/api/config");
  maxBytes = cfg.max_image_bytes;
  const sel = $("#collection");
  sel.innerHTML = "";
  for (const c of cfg.collections) {
    const o = el("option", { value: c.name, text: c.name + (c.image_search ? "" : " (no image model)") });
    if (c.name === cfg.default) o.selected = true;
    sel.append(o);
  }
  if (!cfg.collections.length) showError("No catalog is imported yet: run `embed import catalog.csv --collection products --wait`.");
  await loadScenes();
}

let scenesSeq = 0;
async function loadScenes() {
  const box = $("#scenes");
  const seq = ++scenesSeq;
  box.innerHTML = "";
  const coll = $("#collection").value;
  if (!coll) return;
  try {
    const res = await api(`/api/scenes?collection=${encodeURIComponent(coll)}`);
    if (seq !== scenesSeq) return; // a later catalog choice won
    box.innerHTML = "";
    for (const s of res.scenes) {
      const img = el("img", { src: s.url, alt: "sample scene " + s.index, title: "contains " + s.products.join(", "),
                              "data-products": s.products.join(","), class: "scene" });
      img.addEventListener("click", async () => {
        const blob = await (await fetch(s.url)).blob();
        search(new File([blob], `scene${s.index}.jpg`, { type: "image/jpeg" }));
      });
      box.append(img);
    }
  } catch (err) { /* no scenes for this catalog: uploads still work */ }
}

function focusObject(i) {
  document.querySelectorAll(".box").forEach((b) => b.classList.toggle("focused", b.dataset.index === String(i)));
  document.querySelectorAll(".object").forEach((r) => {
    const on = r.dataset.index === String(i);
    r.classList.toggle("focused", on);
    r.classList.toggle("dimmed", !on);
    if (on) r.scrollIntoView({ block: "nearest", behavior: "smooth" });
  });
}

function fmtAttrs(a) {
  return Object.entries(a).map(([k, v]) => `${k}: ${v}`).join(" · ");
}

function render(res, coll, browserMs) {
  const boxes = $("#boxes");
  boxes.innerHTML = "";
  const matches = $("#matches");
  matches.innerHTML = "";
  // smaller boxes above larger ones (the whole photo is the lowest), so every box can be clicked
  const area = (o) => (o.box[2] - o.box[0]) * (o.box[3] - o.box[1]);
  const byArea = res.objects.map((o, i) => [area(o), i]).sort((a, b) => b[0] - a[0]);
  const zOf = {};
  byArea.forEach(([, i], rank) => { zOf[i] = 10 + rank; });
  res.objects.forEach((o, i) => {
    const [x0, y0, x1, y1] = o.box;
    const color = COLORS[i % COLORS.length];
    const b = el("div", { class: "box", "data-index": String(i), title: `object ${i + 1}: ${o.label}` },
                 el("span", { text: String(i + 1) }));
    Object.assign(b.style, { left: `${100 * x0 / res.width}%`, top: `${100 * y0 / res.height}%`,
                             width: `${100 * (x1 - x0) / res.width}%`, height: `${100 * (y1 - y0) / res.height}%`,
                             borderColor: color, zIndex: String(zOf[i]) });
    b.querySelector("span").style.background = color;
    b.addEventListener("click", () => focusObject(i));
    boxes.append(b);
    const row = el("div", { class: "object", "data-index": String(i) },
                   el("h3", { text: `${i + 1}. ${o.label === "image" ? "whole photo" : o.label} (detector score ${o.score.toFixed(2)})` }));
    row.querySelector("h3").style.borderLeftColor = color;
    row.addEventListener("click", () => focusObject(i));
    const tiles = el("div", { class: "tiles" });
    if (!o.matches.length) tiles.append(el("p", { class: "empty", text: "No matching products." }));
    for (const m of o.matches) {
      tiles.append(el("figure", { class: "match", "data-product": m.product_id },
        el("img", { src: `/api/image/${m.image_id}?collection=${encodeURIComponent(coll)}`, alt: m.product_id, loading: "lazy" }),
        el("figcaption", {}, el("b", { text: m.product_id }), el("br"),
           el("span", { class: "score", text: `score ${m.score.toFixed(3)}` }), el("br"),
           el("small", { text: fmtAttrs(m.attributes) }))));
    }
    row.append(tiles);
    matches.append(row);
  });
  const t = res.timings_ms;
  const stages = [["upload + search + attributes (browser)", browserMs], ["decode", t.decode], ["detect", t.detect],
                  ["embed", t.embed], ["vector search", t.search], ["gRPC SearchByImage total", t.grpc_total],
                  ["product attributes", t.attributes]];
  const tb = $("#timings tbody");
  tb.innerHTML = "";
  for (const [k, v] of stages) if (v !== undefined) tb.append(el("tr", {}, el("td", { text: k }), el("td", { text: `${v.toFixed(0)} ms` })));
  $("#model").textContent = `model ${res.model_id} · ${res.objects.length} object(s)`;
  if (!res.found) showError("Nothing found: no catalog product matches this photo" + ($("#filter").value ? " with this filter." : "."));
  $("#result").dataset.done = "1";
}

async function search(file) {
  showError("");
  $("#result").dataset.done = "";
  if (!file) return;
  if (file.size > maxBytes) {
    showError(`This photo is too large. Please upload an image under ${Math.round(maxBytes / 1048576)} MB and 40 megapixels.`);
    return;
  }
  const coll = $("#collection").value;
  if (photoUrl) URL.revokeObjectURL(photoUrl);
  photoUrl = URL.createObjectURL(file);
  $("#photo").src = photoUrl;
  $("#boxes").innerHTML = "";
  $("#matches").innerHTML = "";
  $("#result").hidden = false;
  setStatus("Searching the catalog …");
  const form = new FormData();
  form.append("image", file);
  form.append("collection", coll);
  form.append("filter", $("#filter").value);
  form.append("top_k", $("#topk").value);
  const t0 = performance.now();
  try {
    const res = await api("/api/search", { method: "POST", body: form });
    const ms = performance.now() - t0;
    window.lastSearch = { ms, response: res };
    render(res, coll, ms);
    setStatus(`Found ${res.found} match(es) in ${ms.toFixed(0)} ms.`);
  } catch (err) {
    window.lastSearch = { ms: performance.now() - t0, error: err.message };
    $("#result").hidden = true;
    setStatus("");
    showError(err.message);
  }
}

$("#file").addEventListener("change", (e) => search(e.target.files[0]));
const drop = $("#drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); search(e.dataTransfer.files[0]); });
$("#collection").addEventListener("change", loadScenes);
loadConfig().catch((err) => showError(err.message));
