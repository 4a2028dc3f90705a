import type { MachineDescription } from '../../machines/diagram.js';
import { lifecycleSvg } from './lifecycle-svg.js';
import { LEDGER_HTML, LEDGER_SCRIPT, LEDGER_STYLE } from './page-ledger.js';

/**
 * The admin page, live sessions and the ledger's keys, spend and ended
 * sessions: one self-contained HTML document (no build step,
 * no external assets). It holds no data: everything it shows comes from the
 * token-protected API, read with `Authorization: Bearer <token>`, the list
 * from the SSE stream at `sessions/stream`. A `?token=` in the address is
 * moved into sessionStorage and removed from the address bar at once.
 */
export function livePage(description: MachineDescription, nonce: string): string {
  const order = [...description.states.filter((s) => !s.final), ...description.states.filter((s) => s.final)].map((s) => s.name);
  const config = JSON.stringify({ states: order, finalStates: description.states.filter((s) => s.final).map((s) => s.name) }).replaceAll('<', '\\u003c');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>realtime-relay · admin</title>
<style nonce="${nonce}">${STYLE}${LEDGER_STYLE}</style>
</head>
<body>
<header>
  <h1>realtime-relay <span>admin</span></h1>
  <div class="status"><span id="status-dot" class="dot"></span><span id="status-text">not connected</span></div>
  <button id="logout" type="button" class="quiet" hidden>Forget token</button>
</header>
<main>
  <section id="login" class="card" hidden>
    <h2>Admin token</h2>
    <p>Enter the relay's <code>ADMIN_TOKEN</code>. It is kept in this tab only (sessionStorage) and sent as a bearer header.</p>
    <form id="login-form" autocomplete="off">
      <input id="token-input" type="password" placeholder="ADMIN_TOKEN" aria-label="Admin token" required minlength="16">
      <button type="submit">Connect</button>
    </form>
    <p id="login-error" class="error" hidden></p>
  </section>
  <section id="live" hidden>
    <div class="card">
      <div class="card-head"><h2>Session lifecycle</h2><p class="hint">Drawn from the session machine. Numbers are live sessions in each state; hover a session to see where it is.</p></div>
      <div id="diagram">${lifecycleSvg(description)}</div>
    </div>
    <div class="card">
      <div class="card-head"><h2>Live sessions <span id="count" class="pill">0</span></h2><p class="hint" id="updated"></p></div>
      <div class="table-wrap">
      <table>
        <thead><tr>
          <th>Session</th><th>Key</th><th>Model · upstream</th><th>State</th><th class="num">Age</th>
          <th class="num">Client → upstream</th><th class="num">Upstream → client</th><th>Response</th><th class="num">Spend (USD)</th><th></th>
        </tr></thead>
        <tbody id="rows"></tbody>
      </table>
      </div>
      <p id="empty" class="empty">No live sessions.</p>
    </div>
${LEDGER_HTML}
  </section>
  <div id="toast" role="status" hidden></div>
</main>
<script nonce="${nonce}">
const CONFIG = ${config};
${SCRIPT}
${LEDGER_SCRIPT}
${BOOT}
</script>
</body>
</html>
`;
}

const STYLE = `
:root { --bg:#f4f6f9; --card:#fff; --ink:#1a202c; --muted:#5a6475; --line:#e2e8f0; --accent:#2b6cb0;
  --s0:#b7791f; --s1:#2f855a; --s2:#c05621; --s3:#718096; --s4:#6b46c1; --s5:#2c7a7b; --s6:#4a5568; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color:var(--ink); background:var(--bg); }
header { display:flex; align-items:center; gap:20px; padding:14px 28px; background:#1a202c; color:#f7fafc; }
header h1 { font-size:18px; margin:0; font-weight:650; letter-spacing:.2px; }
header h1 span { font-weight:400; color:#a0aec0; margin-left:6px; }
.status { margin-left:auto; display:flex; align-items:center; gap:8px; color:#cbd5e0; }
.dot { width:10px; height:10px; border-radius:50%; background:#a0aec0; display:inline-block; }
.dot.live { background:#48bb78; box-shadow:0 0 0 3px rgba(72,187,120,.25); }
.dot.retrying { background:#ecc94b; }
main { padding:22px 28px 40px; max-width:1500px; margin:0 auto; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:16px 20px; margin-bottom:20px; box-shadow:0 1px 2px rgba(0,0,0,.04); }
.card-head { display:flex; align-items:baseline; gap:16px; flex-wrap:wrap; }
h2 { font-size:15px; margin:0 0 8px; }
.hint { color:var(--muted); margin:0 0 8px; font-size:12.5px; }
.pill { display:inline-block; min-width:22px; padding:0 7px; border-radius:11px; background:#edf2f7; color:var(--ink); font-size:12px; text-align:center; }
button { font:inherit; border:1px solid var(--accent); background:var(--accent); color:#fff; border-radius:6px; padding:5px 12px; cursor:pointer; }
button.quiet { background:transparent; color:#cbd5e0; border-color:#4a5568; }
button.danger { background:#fff; color:#c53030; border-color:#feb2b2; }
button.danger:hover:not(:disabled) { background:#c53030; color:#fff; border-color:#c53030; }
button:disabled { opacity:.55; cursor:default; }
#login form { display:flex; gap:10px; }
#login input { flex:1; max-width:420px; font:inherit; padding:6px 10px; border:1px solid var(--line); border-radius:6px; }
.error { color:#c53030; }
#diagram svg { width:100%; height:auto; max-height:320px; display:block; }
svg .edge { stroke:#a0aec0; stroke-width:1.4; fill:none; }
svg .arrowhead, svg .start { fill:#a0aec0; }
svg .event { font:10.5px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; fill:#4a5568; }
svg .state rect { fill:#f7fafc; stroke:#a0aec0; stroke-width:1.5; transition:fill .25s, stroke .25s; }
svg .state rect.inner { fill:none; }
svg .state .name { font:600 14px system-ui, sans-serif; fill:#2d3748; }
svg .state .badge { display:none; }
svg .state.occupied .badge { display:inline; }
svg .state .badge circle { fill:#1a202c; }
svg .state .badge .count { font:700 11.5px system-ui, sans-serif; fill:#fff; }
svg .state.occupied rect { stroke-width:2.5; }
svg .state.occupied .name { fill:#fff; }
${[0, 1, 2, 3, 4, 5, 6].map((i) => `svg .state.occupied[data-index="${i}"] rect:not(.inner) { fill:var(--s${i}); stroke:var(--s${i}); } .track i.on[data-index="${i}"], .state-name[data-index="${i}"] { background:var(--s${i}); }`).join('\n')}
svg .state.occupied rect.inner { stroke:#fff; }
svg .state.selected rect:not(.inner), svg .state.selected.occupied rect:not(.inner) { stroke:#1a202c; stroke-width:4; }
.table-wrap { overflow-x:auto; }
table { width:100%; border-collapse:collapse; }
th { text-align:left; font-size:11.5px; text-transform:uppercase; letter-spacing:.4px; color:var(--muted); font-weight:600; padding:8px 10px; border-bottom:1px solid var(--line); white-space:nowrap; }
td { padding:9px 10px; border-bottom:1px solid var(--line); vertical-align:middle; white-space:nowrap; }
tr.selected td { background:#ebf4ff; }
.num { text-align:right; font-variant-numeric:tabular-nums; }
.mono { font-family:ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:12.5px; }
.sub { display:block; color:var(--muted); font-size:12px; }
.track { display:inline-flex; gap:3px; vertical-align:middle; margin-right:8px; }
.track i { width:14px; height:6px; border-radius:3px; background:#e2e8f0; display:inline-block; }
.state-name { display:inline-block; color:#fff; padding:1px 9px; border-radius:10px; font-size:12.5px; font-weight:600; background:#718096; }
.badge-live { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; background:#fefcbf; color:#744210; }
.badge-live::before { content:""; display:inline-block; width:7px; height:7px; border-radius:50%; background:#d69e2e; margin-right:6px; vertical-align:1px; animation:pulse 1s infinite alternate; }
@keyframes pulse { from { opacity:1; } to { opacity:.3; } }
.idle { color:var(--muted); }
.empty { color:var(--muted); text-align:center; padding:18px 0 6px; margin:0; }
#toast { position:fixed; bottom:20px; right:24px; background:#1a202c; color:#fff; padding:10px 16px; border-radius:8px; max-width:420px; box-shadow:0 4px 12px rgba(0,0,0,.2); }
`;

/* The page's script. Data is written with textContent only: key names are operator input. */
const SCRIPT = `
'use strict';
const TOKEN_KEY = 'realtime-relay.admin-token';
const $ = (id) => document.getElementById(id);
let token = null;
let stream = null;
let retryTimer = null;
let selected = null;
let sessions = [];
const rows = new Map();

function takeToken() {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get('token');
  if (fromUrl !== null) {
    // Out of the address bar and history at once; the tab keeps it in sessionStorage.
    url.searchParams.delete('token');
    history.replaceState(null, '', url.pathname + url.search + url.hash);
    if (fromUrl) sessionStorage.setItem(TOKEN_KEY, fromUrl);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function authHeaders() { return { Authorization: 'Bearer ' + token }; }
function api(path) { return new URL(path, location.href).toString(); }

function setStatus(kind, text) {
  $('status-dot').className = 'dot ' + kind;
  $('status-text').textContent = text;
}

function toast(text) {
  const el = $('toast');
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 5000);
}

function showLogin(message) {
  stop();
  $('live').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  $('login-error').hidden = !message;
  $('login-error').textContent = message || '';
  setStatus('', 'not connected');
  $('token-input').focus();
}

function stop() {
  if (stream) stream.abort();
  stream = null;
  clearTimeout(retryTimer);
}

function retry() {
  setStatus('retrying', 'reconnecting…');
  clearTimeout(retryTimer);
  retryTimer = setTimeout(connect, 1500);
}

async function connect() {
  stop();
  const controller = new AbortController();
  stream = controller;
  $('login').hidden = true;
  $('live').hidden = false;
  $('logout').hidden = false;
  setStatus('retrying', 'connecting…');
  let response;
  try {
    response = await fetch(api('sessions/stream'), { headers: { ...authHeaders(), Accept: 'text/event-stream' }, cache: 'no-store', signal: controller.signal });
  } catch (error) {
    if (!controller.signal.aborted) retry();
    return;
  }
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    showLogin('The relay refused that token.');
    return;
  }
  if (!response.ok || !response.body) { retry(); return; }
  setStatus('live', 'live');
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\\r\\n?/g, '\\n');
      let end;
      while ((end = buffer.indexOf('\\n\\n')) !== -1) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        onMessage(block);
      }
    }
  } catch (error) {
    // The stream broke off: reconnect below.
  }
  if (!controller.signal.aborted) retry();
}

function onMessage(block) {
  let event = 'message';
  const data = [];
  for (const line of block.split('\\n')) {
    if (line.startsWith('event:')) event = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
  }
  if (event !== 'sessions' || data.length === 0) return;
  const message = JSON.parse(data.join('\\n'));
  sessions = message.sessions;
  render(message.at);
}

function formatBytes(n) {
  if (n < 1024) return n + ' B';
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
  return (n / 1024 / 1024).toFixed(1) + ' MiB';
}

function frames(n) { return n === 1 ? '1 frame' : n + ' frames'; }

function formatAge(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + 's';
  const m = Math.floor(s / 60);
  if (m < 60) return m + 'm ' + String(s % 60).padStart(2, '0') + 's';
  return Math.floor(m / 60) + 'h ' + String(m % 60).padStart(2, '0') + 'm';
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function cell(row, field, className) {
  const td = el('td', className);
  td.dataset.field = field;
  row.appendChild(td);
  return td;
}

function createRow(session) {
  const tr = el('tr');
  tr.dataset.sessionId = session.id;
  const id = cell(tr, 'id', 'mono');
  id.textContent = session.id.slice(0, 17) + '…';
  id.title = session.id;
  cell(tr, 'key');
  cell(tr, 'model');
  cell(tr, 'state');
  cell(tr, 'age', 'num');
  cell(tr, 'in', 'num');
  cell(tr, 'out', 'num');
  cell(tr, 'response');
  cell(tr, 'spend', 'num mono');
  const action = cell(tr, 'action');
  const button = el('button', 'danger', 'Cancel');
  button.type = 'button';
  button.dataset.action = 'cancel';
  button.addEventListener('click', () => cancelSession(session.id, button));
  action.appendChild(button);
  tr.addEventListener('mouseenter', () => select(session.id));
  tr.addEventListener('mouseleave', () => select(null));
  return tr;
}

function fill(td, text, sub) {
  td.textContent = text;
  if (sub) td.appendChild(el('span', 'sub', sub));
}

function updateRow(tr, s) {
  const q = (field) => tr.querySelector('[data-field="' + field + '"]');
  fill(q('key'), s.key.name);
  fill(q('model'), s.model, (s.upstream ? s.upstream.name + (s.upstream.model !== s.model ? ' · ' + s.upstream.model : '') : 'dialling…') + (s.transport === 'webrtc' ? ' · WebRTC call' : s.transport === 'sip' ? ' · phone call' : ''));
  const stateCell = q('state');
  stateCell.textContent = '';
  const track = el('span', 'track');
  const index = CONFIG.states.indexOf(s.state);
  CONFIG.states.forEach((name, i) => {
    const dot = el('i', i === index ? 'on' : '');
    dot.dataset.index = String(i);
    dot.title = name;
    track.appendChild(dot);
  });
  const name = el('span', 'state-name', s.state);
  name.dataset.index = String(index);
  name.dataset.stateName = s.state;
  stateCell.append(track, name);
  fill(q('age'), formatAge(s.age_ms));
  fill(q('in'), formatBytes(s.client_to_upstream.bytes), frames(s.client_to_upstream.frames));
  fill(q('out'), formatBytes(s.upstream_to_client.bytes), frames(s.upstream_to_client.frames));
  const response = q('response');
  response.textContent = '';
  if (s.response_in_flight) {
    const badge = el('span', 'badge-live', 'in flight');
    badge.dataset.inFlight = 'true';
    response.appendChild(badge);
    if (s.response_id) response.appendChild(el('span', 'sub mono', s.response_id));
  } else {
    response.appendChild(el('span', 'idle', '—'));
  }
  fill(q('spend'), s.spend);
  const button = q('action').querySelector('button');
  const closing = s.state === 'draining' || s.state.startsWith('closed') || CONFIG.finalStates.includes(s.state);
  if (closing) { button.disabled = true; button.textContent = s.state === 'draining' ? 'Draining…' : 'Closing…'; }
}

function render(at) {
  const body = $('rows');
  const seen = new Set();
  for (const s of sessions) {
    seen.add(s.id);
    let tr = rows.get(s.id);
    if (!tr) { tr = createRow(s); rows.set(s.id, tr); body.appendChild(tr); }
    updateRow(tr, s);
  }
  for (const [id, tr] of rows) if (!seen.has(id)) { tr.remove(); rows.delete(id); }
  $('count').textContent = String(sessions.length);
  $('empty').hidden = sessions.length > 0;
  $('updated').textContent = 'updated ' + new Date(at).toLocaleTimeString();
  const counts = new Map();
  for (const s of sessions) counts.set(s.state, (counts.get(s.state) || 0) + 1);
  for (const node of document.querySelectorAll('#diagram .state')) {
    const n = counts.get(node.dataset.state) || 0;
    node.classList.toggle('occupied', n > 0);
    node.querySelector('.count').textContent = String(n);
  }
  if (selected && !rows.has(selected)) selected = null;
  select(selected);
}

function select(id) {
  selected = id;
  const session = sessions.find((s) => s.id === id);
  for (const [rowId, tr] of rows) tr.classList.toggle('selected', rowId === id);
  for (const node of document.querySelectorAll('#diagram .state')) node.classList.toggle('selected', !!session && node.dataset.state === session.state);
}

async function cancelSession(id, button) {
  if (!confirm('Cancel session ' + id + '?\\nIts response in flight is cancelled and billed; the client is told "session_cancelled".')) return;
  button.disabled = true;
  button.textContent = 'Cancelling…';
  try {
    const response = await fetch(api('sessions/' + encodeURIComponent(id) + '/cancel'), { method: 'POST', headers: authHeaders() });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      throw new Error(body && body.error ? body.error.message : 'HTTP ' + response.status);
    }
  } catch (error) {
    button.disabled = false;
    button.textContent = 'Cancel';
    toast('Could not cancel: ' + error.message);
  }
}

$('logout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  token = null;
  showLogin();
});
`;

/* Runs last, once both halves of the script are defined. */
const BOOT = `
function start() {
  connect();
  loadLedgerViews();
}
$('login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  token = $('token-input').value.trim();
  $('token-input').value = '';
  sessionStorage.setItem(TOKEN_KEY, token);
  start();
});
token = takeToken();
if (token) start(); else showLogin();
`;
