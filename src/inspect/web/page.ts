// The page of `realfork watch`: one HTML document with its style and script
// inline (no framework, nothing fetched but the event stream). The picture
// is fds --svg's SVG, put into the DOM as it comes (text selectable, read by
// screen readers); the page's style recolours it for a dark theme.
import { escapeXml } from "../picture.js";

const STYLE = `
:root { color-scheme: light dark; --bg: #ffffff; --fg: #1a1a1a; --muted: #666666; --panel: #f7f7f2;
  --border: #d0d0c8; --accent: #1f5fbf; --bad-bg: #fde2e2; --bad: #b01515; --listen: #1f5fbf;
  --est: #1b8a3a; --other: #c06a00; --edge: #555555; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #15171b; --fg: #e4e6ea; --muted: #9aa0a8; --panel: #22262c; --border: #3a4048;
    --accent: #7fb0ff; --bad-bg: #4a1d1d; --bad: #ff8a8a; --listen: #7fb0ff; --est: #5fd07e;
    --other: #f0a848; --edge: #a0a6ae; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 15px/1.45 system-ui, sans-serif; }
header { padding: 0.8rem 1.2rem; border-bottom: 1px solid var(--border); display: flex; flex-wrap: wrap;
  gap: 0.4rem 1.5rem; align-items: baseline; }
h1 { font-size: 1.15rem; margin: 0; }
h2 { font-size: 1rem; margin: 0 0 0.5rem; }
#status { color: var(--muted); }
#banner { display: none; margin: 0.8rem 1.2rem 0; padding: 0.7rem 1rem; border: 2px solid var(--bad);
  background: var(--bad-bg); color: var(--fg); border-radius: 6px; font-weight: 600; }
#banner.shown { display: block; }
main { display: grid; grid-template-columns: minmax(0, 1fr); gap: 1rem; padding: 1rem 1.2rem; }
@media (min-width: 1280px) { main { grid-template-columns: minmax(0, 1fr) 30rem; } aside { position: sticky;
  top: 0.5rem; align-self: start; max-height: calc(100vh - 1rem); overflow: auto; } }
#picture svg { display: block; max-width: 100%; height: auto; }
section { margin-bottom: 1.2rem; }
.panel { background: var(--panel); border: 1px solid var(--border); border-radius: 6px; padding: 0.7rem 0.9rem; }
#steps ul, #timeline ol { list-style: none; margin: 0; padding: 0; }
#steps li { display: flex; gap: 0.7rem; align-items: baseline; padding: 0.3rem 0; }
#steps li + li { border-top: 1px solid var(--border); }
button { font: inherit; font-weight: 600; padding: 0.25rem 0.8rem; border-radius: 5px; cursor: pointer;
  border: 1px solid var(--accent); background: var(--accent); color: var(--bg); white-space: nowrap; }
button:disabled { opacity: 0.5; cursor: default; }
.who { font-weight: 600; }
code, .mono, #timeline { font-family: "DejaVu Sans Mono", Menlo, monospace; font-size: 0.85rem; }
#timeline li { padding: 0.15rem 0; border-bottom: 1px solid var(--border); overflow-wrap: anywhere; }
#timeline time { color: var(--muted); margin-right: 0.5rem; }
#timeline .refs { color: var(--accent); }
#story p { margin: 0.3rem 0 0.6rem; }
.muted { color: var(--muted); }
body.ended #picture, body.ended #steps { opacity: 0.55; }
/* The SVG's own colours, mapped to the theme. */
#picture svg > rect[fill="#ffffff"], #picture svg rect[fill="#ffffff"] { fill: var(--bg); }
#picture svg rect[fill="#f7f7f2"] { fill: var(--panel); }
#picture svg rect[stroke="#444"] { stroke: var(--muted); }
#picture svg rect[fill="#fde2e2"] { fill: var(--bad-bg); }
#picture svg text { fill: var(--fg); }
#picture svg text[fill="#666"] { fill: var(--muted); }
#picture svg [stroke="#1f5fbf"] { stroke: var(--listen); }
#picture svg text[fill="#1f5fbf"] { fill: var(--listen); }
#picture svg [stroke="#1b8a3a"] { stroke: var(--est); }
#picture svg text[fill="#1b8a3a"] { fill: var(--est); }
#picture svg [stroke="#c06a00"] { stroke: var(--other); }
#picture svg text[fill="#c06a00"] { fill: var(--other); }
#picture svg [stroke="#d01c1c"] { stroke: var(--bad); }
#picture svg text[fill="#d01c1c"] { fill: var(--bad); }
#picture svg marker path[fill="#555"] { fill: var(--edge); }
`;

// Runs in the browser. Every state comes whole on the event stream; the
// page redraws what changed.
const SCRIPT = `
const token = new URLSearchParams(location.search).get("token") || "";
const q = (s) => document.querySelector(s);
const esc = (t) => String(t).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
let lastSvg = "";
let shownEvents = 0;
let ended = false;
let clickedSeq = 0;
function end(text) {
  ended = true;
  q("#banner").textContent = text;
  q("#banner").classList.add("shown");
  for (const b of document.querySelectorAll("button")) b.disabled = true;
  document.body.classList.add("ended");

  source.close();
}
async function post(path, button) {
  button.disabled = true;
  const r = await fetch(path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token), { method: "POST" });
  if (!r.ok) {
    q("#step-error").textContent = await r.text();
    button.disabled = false;
  } else q("#step-error").textContent = "";
}
const pad = (n, w) => String(n).padStart(w, "0");
const clock = (ms) => { const d = new Date(ms); return pad(d.getHours(), 2) + ":" + pad(d.getMinutes(), 2) + ":" + pad(d.getSeconds(), 2) + "." + pad(d.getMilliseconds(), 3); };
function render(s) {
  q("#title").textContent = s.title;
  document.title = s.title;
  q("#status").textContent = "last change seen at " + clock(s.at) + " (reading " + s.reads + "; the tables are read every " + s.intervalMs + " ms, once for all open pages)";
  if (s.svg !== lastSvg) {
    q("#picture").innerHTML = s.svg;
    lastSvg = s.svg;
  }
  const steps = q("#steps");
  steps.hidden = !s.stepButtons || (s.waiting.length === 0 && !s.stepped);
  q("#steps ul").innerHTML = s.waiting.length === 0
    ? '<li class="muted">no process waits at a step now</li>'
    : s.waiting.map((w) => '<li><button type="button" data-step-pid="' + w.pid + '">Go on</button><span><span class="who">' + esc(w.role + " " + w.pid) + '</span> waits after <code>' + esc(w.step) + '</code>: ' + esc(w.detail) + '</span></li>').join("");
  const story = q("#story");
  story.hidden = !s.story;
  if (s.story) {
    q("#story h2").textContent = s.story.heading;
    q("#story p").textContent = s.story.text;
    const next = q("#story button");
    next.textContent = s.story.done ? "The end" : "Next step";
    next.dataset.seq = s.story.seq;
    next.disabled = !s.story.next || ended || s.story.seq === clickedSeq;
  }
  const list = q("#timeline ol");
  const batch = document.createDocumentFragment();
  for (const e of s.timeline.slice(Math.max(0, shownEvents - s.firstEvent))) {
    const li = document.createElement("li");
    li.className = e.kind;
    li.innerHTML = '<time>' + clock(e.at) + '</time>' + esc(e.text);
    batch.append(li);
  }
  list.prepend(batch);
  shownEvents = s.firstEvent + s.timeline.length;
  while (list.children.length > 500) list.lastChild.remove();
}
document.addEventListener("click", (ev) => {
  const b = ev.target.closest("button");
  if (!b || b.disabled) return;
  if (b.dataset.stepPid) post("step?pid=" + b.dataset.stepPid, b);
  else if (b.id === "next") {
    clickedSeq = Number(b.dataset.seq);
    post("next?seq=" + b.dataset.seq, b);
  }
});
const source = new EventSource("events?token=" + encodeURIComponent(token));
source.addEventListener("state", (e) => render(JSON.parse(e.data)));
source.addEventListener("end", (e) => end(JSON.parse(e.data).text));
source.onerror = () => { if (!ended && source.readyState === EventSource.CLOSED) end("Lost the connection to realfork watch."); };
`;

/** The page; the title until the first state comes. */
export function watchPage(title: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>${escapeXml(title)}</title>
<style>${STYLE}</style>
</head><body>
<header><h1 id="title">${escapeXml(title)}</h1><span id="status">connecting...</span></header>
<div id="banner" role="alert"></div>
<main>
<div id="picture" aria-live="off"></div>
<aside>
<section id="story" class="panel" hidden><h2></h2><p></p><button type="button" id="next" disabled>Next step</button></section>
<section id="steps" class="panel" hidden><h2>Waiting at a step (serve --step)</h2><ul></ul><p id="step-error" class="muted" role="status"></p></section>
<section id="timeline"><h2>What changed (newest first)</h2><ol aria-live="polite"></ol></section>
</aside>
</main>
<script>${SCRIPT}</script>
</body></html>
`;
}

/** Served without the token (or with a wrong one): nothing about any process. */
export function forbiddenPage(): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>realfork watch: token required</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}</style>
</head><body>
<h1>realfork watch: token required</h1>
<p>This page shows processes only to whoever has its token. Open the exact address that
<code>realfork watch</code> printed in its terminal (it ends in <code>?token=...</code>).</p>
</body></html>
`;
}
