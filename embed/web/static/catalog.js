// Catalog pages: live import progress, the cluster at a glance, the imported products (paged).
"use strict";
const $ = (s) => document.querySelector(s);
const el = (tag, text) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; return e; };
let page = 0;
const size = 24;

function showError(msg) { const e = $("#error"); e.textContent = msg; e.hidden = !msg; }
async function api(url) {
  let resp;
  try { resp = await fetch(url); } catch (err) { throw new Error("The page cannot reach its server."); }
  let body = null;
  try { body = await resp.json(); } catch (err) { /* not JSON */ }
  if (!resp.ok) throw new Error((body && body.message) || `The server answered ${resp.status}.`);
  return body;
}
function row(cells) { const tr = el("tr"); for (const c of cells) { const td = el("td"); td.append(c); tr.append(td); } return tr; }

async function refreshImports() {
  const s = await api("/api/imports");
  $("#queue").textContent = `queue ${s.stream}: ${s.length} job(s) in the stream, ${s.pending} pending, lag ${s.lag}, ` +
    `${s.consumers} worker(s), ${s.dead_letters} dead letter(s), ${s.processed_total} processed`;
  const tb = $("#imports tbody"); tb.innerHTML = "";
  for (const i of [...s.imports].reverse()) {
    const p = el("progress"); p.max = i.total || 1; p.value = i.done + i.dead;
    tb.append(row([i.import_id, i.collection, p, String(i.done), String(i.dead), String(i.total), i.images_per_s.toFixed(1)]));
  }
  const db = $("#dead tbody"); db.innerHTML = "";
  for (const d of s.dead_letter_list) db.append(row([d.import_id, d.product_id, d.image_path, d.reason]));
}

async function refreshCluster() {
  const c = await api("/api/cluster");
  const nb = $("#nodes tbody"); nb.innerHTML = "";
  for (const n of c.nodes) nb.append(row([n.id, n.address, n.state, String(n.weight)]));
  const ids = c.nodes.map((n) => n.id);
  const head = $("#rows thead"); head.innerHTML = "";
  head.append(row(["collection", ...ids, "total"]));
  const rb = $("#rows tbody"); rb.innerHTML = "";
  for (const col of c.collections) rb.append(row([col.name, ...ids.map((id) => col.nodes[id] === null || col.nodes[id] === undefined ? "–" : String(col.nodes[id])), String(col.total_rows)]));
}

async function loadProducts() {
  const coll = $("#collection").value;
  if (!coll) return;
  const res = await api(`/api/products?collection=${encodeURIComponent(coll)}&page=${page}&size=${size}`);
  const pages = Math.max(1, Math.ceil(res.total / size));
  $("#pageinfo").textContent = `page ${page + 1} of ${pages} (${res.total} vectors)`;
  const box = $("#products"); box.innerHTML = "";
  for (const it of res.items) {
    const f = document.createElement("figure"); f.className = "match";
    const img = document.createElement("img"); img.loading = "lazy"; img.alt = it.product_id;
    img.src = `/api/image/${it.image_id}?collection=${encodeURIComponent(coll)}`;
    const cap = document.createElement("figcaption");
    cap.append(el("b", it.product_id), el("br"), el("small", Object.entries(it.attributes).map(([k, v]) => `${k}: ${v}`).join(" · ")));
    f.append(img, cap); box.append(f);
  }
  $("#prev").disabled = page === 0; $("#next").disabled = page + 1 >= pages;
}

async function init() {
  const cfg = await api("/api/config");
  for (const c of cfg.collections) { const o = el("option", c.name); o.value = c.name; o.selected = c.name === cfg.default; $("#collection").append(o); }
  $("#collection").addEventListener("change", () => { page = 0; loadProducts().catch((e) => showError(e.message)); });
  $("#prev").addEventListener("click", () => { page = Math.max(0, page - 1); loadProducts().catch((e) => showError(e.message)); });
  $("#next").addEventListener("click", () => { page += 1; loadProducts().catch((e) => showError(e.message)); });
  await loadProducts();
}
async function tick() {
  try { await Promise.all([refreshImports(), refreshCluster()]); showError(""); } catch (e) { showError(e.message); }
  setTimeout(tick, 1000);
}
init().catch((e) => showError(e.message));
tick();
