/**
 * The ledger half of the admin page: keys (create, top up, disable and
 * enable), spend per key over time, and ended sessions. Markup, style and
 * script for page.ts to embed; every action calls the admin API, so the
 * page shows the API's own validation and error messages.
 */

export const LEDGER_HTML = `
    <div class="card" id="keys-card">
      <div class="card-head"><h2>Keys</h2><p class="hint">Money is USD. A new key's secret is shown once.</p></div>
      <form id="create-key" class="inline-form" autocomplete="off">
        <label>New key name <input id="new-key-name" name="name" required maxlength="200"></label>
        <label>Starting balance (USD) <input id="new-key-balance" name="balance" inputmode="decimal" required placeholder="10"></label>
        <label>Spend cap per session (USD, optional) <input id="new-key-cap" name="spend_cap" inputmode="decimal"></label>
        <button type="submit">Create key</button>
      </form>
      <div id="new-secret" class="secret" role="alert" hidden>
        <p><strong>Copy it now:</strong> this is the only time the key <span id="new-secret-name"></span> is shown. The relay keeps only its hash.</p>
        <label>Key <input id="new-secret-value" readonly class="mono" size="60"></label>
        <button type="button" id="copy-secret">Copy</button>
        <button type="button" id="dismiss-secret" class="plain">I have copied it</button>
      </div>
      <p id="keys-error" class="error" role="alert" hidden></p>
      <div class="table-wrap">
      <table>
        <thead><tr><th>Name</th><th>Id</th><th class="num">Balance</th><th class="num">Held</th><th>Status</th><th>Top up (USD)</th><th></th></tr></thead>
        <tbody id="key-rows"></tbody>
      </table>
      </div>
    </div>
    <div class="card" id="spend-card">
      <div class="card-head"><h2>Spend per key</h2><p class="hint">Charges from the ledger, summed per key per UTC hour or day.</p></div>
      <form id="spend-form" class="inline-form">
        <label>Bucket <select id="spend-bucket"><option value="hour">hour (last 24)</option><option value="day" selected>day (last 30)</option></select></label>
        <button type="submit">Show</button>
      </form>
      <p id="spend-error" class="error" role="alert" hidden></p>
      <div id="spend-chart"></div>
      <ul id="spend-legend" class="legend"></ul>
    </div>
    <div class="card" id="ended-card">
      <div class="card-head"><h2>Ended sessions</h2><p class="hint">From the ledger, newest first; cost is what the settlement recorded.</p></div>
      <form id="ended-form" class="inline-form" autocomplete="off">
        <label>Key (id or name) <input id="ended-key" name="key" maxlength="200" placeholder="any key"></label>
        <label>Per page <select id="ended-limit"><option>5</option><option selected>20</option><option>50</option><option>100</option></select></label>
        <button type="submit">Search</button>
      </form>
      <p id="ended-error" class="error" role="alert" hidden></p>
      <div class="table-wrap">
      <table>
        <thead><tr><th>Session</th><th>Key</th><th>End reason</th><th class="num">Duration</th><th class="num">Cost (USD)</th><th>Started</th><th>Ended</th></tr></thead>
        <tbody id="ended-rows"></tbody>
      </table>
      </div>
      <p id="ended-empty" class="empty" hidden>No ended sessions.</p>
      <nav class="pager" aria-label="Ended sessions pages">
        <button type="button" id="ended-newer" disabled>← Newer</button>
        <span id="ended-page">page 1</span>
        <button type="button" id="ended-older" disabled>Older →</button>
      </nav>
    </div>`;

export const LEDGER_STYLE = `
.inline-form { display:flex; flex-wrap:wrap; gap:12px; align-items:flex-end; margin:4px 0 12px; }
.inline-form label, .secret label { display:flex; flex-direction:column; gap:3px; font-size:12.5px; color:var(--muted); }
input, select { font:inherit; padding:5px 8px; border:1px solid var(--line); border-radius:6px; color:var(--ink); background:#fff; }
td input { width:90px; }
button.plain { background:#fff; color:var(--accent); }
.secret { border:2px solid #d69e2e; background:#fffff0; border-radius:8px; padding:10px 14px; margin-bottom:12px; }
.secret p { margin:0 0 8px; }
.secret label { flex-direction:row; align-items:center; gap:8px; display:inline-flex; margin-right:8px; }
.status-disabled { color:#c53030; font-weight:600; }
.status-enabled { color:#2f855a; }
.legend { list-style:none; padding:0; margin:8px 0 0; display:flex; flex-wrap:wrap; gap:16px; }
.legend .swatch { display:inline-block; width:11px; height:11px; border-radius:2px; margin-right:6px; vertical-align:-1px; }
${[0, 1, 2, 3, 4, 5, 6, 7].map((i) => `.swatch.k${i} { background:var(--k${i}); } svg .bar.k${i} { fill:var(--k${i}); }`).join('\n')}
:root { --k0:#2b6cb0; --k1:#dd6b20; --k2:#38a169; --k3:#805ad5; --k4:#d53f8c; --k5:#319795; --k6:#b7791f; --k7:#4a5568; }
#spend-chart svg { width:100%; height:auto; max-height:260px; display:block; }
svg .axis { stroke:#cbd5e0; stroke-width:1; }
svg .tick { font:12px system-ui, sans-serif; fill:#5a6475; }
.pager { display:flex; gap:12px; align-items:center; justify-content:flex-end; margin-top:10px; }
`;

/* Uses $, el, api and authHeaders of the page's script. Text goes in with textContent only. */
export const LEDGER_SCRIPT = `
class ApiError extends Error {}

/** Calls the admin API; a refusal throws with the API's own message. */
async function request(method, path, body) {
  const init = { method, headers: authHeaders(), cache: 'no-store' };
  if (body !== undefined) { init.headers = { ...init.headers, 'Content-Type': 'application/json' }; init.body = JSON.stringify(body); }
  const response = await fetch(api(path), init);
  const answer = await response.json().catch(() => null);
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    showLogin('The relay refused that token.');
  }
  if (!response.ok) throw new ApiError(answer && answer.error ? answer.error.message : 'HTTP ' + response.status);
  return answer;
}

function showError(id, error) {
  $(id).textContent = error ? error.message : '';
  $(id).hidden = !error;
}

/** nano-USD (a decimal integer string) as USD, exact and read as the API writes USD: "1750000004" → "1.750000004", "5000000" → "0.005000". */
function formatNano(text) {
  let n = BigInt(text);
  const sign = n < 0n ? '-' : '';
  if (n < 0n) n = -n;
  const fraction = String(n % 1000000000n).padStart(9, '0').replace(/0+$/, '').padEnd(6, '0');
  return sign + String(n / 1000000000n) + '.' + fraction;
}

/** The axis's top, rounded for reading only; the legend and each bar's title are exact. */
function axisUsd(nano) {
  return nano === 0n ? '0 USD' : Number(formatNano(String(nano))).toPrecision(3) + ' USD';
}

function formatDuration(ms) { return ms < 1000 ? ms + ' ms' : formatAge(ms); }
function formatTime(iso) { return new Date(iso).toLocaleString(); }

/* Keys */

async function loadKeys() {
  const list = await request('GET', 'keys');
  const body = $('key-rows');
  body.textContent = '';
  for (const key of list.data) body.appendChild(keyRow(key));
}

function keyRow(key) {
  const tr = el('tr');
  tr.dataset.keyId = key.id;
  tr.dataset.keyName = key.name;
  const name = el('td', '', key.name);
  name.dataset.field = 'name';
  const id = el('td', 'mono', key.id.slice(0, 8) + '…');
  id.title = key.id;
  const balance = el('td', 'num mono', key.balance);
  balance.dataset.field = 'balance';
  const held = el('td', 'num mono', key.held);
  const status = el('td', key.disabled ? 'status-disabled' : 'status-enabled', key.disabled ? 'disabled' : 'enabled');
  status.dataset.field = 'status';
  const topUp = el('td');
  const form = el('form', 'row-form');
  const amount = el('input');
  amount.name = 'amount';
  amount.inputMode = 'decimal';
  amount.placeholder = '10';
  amount.setAttribute('aria-label', 'Amount in USD to add to ' + key.name);
  const add = el('button', '', 'Top up');
  add.type = 'submit';
  add.dataset.action = 'topup';
  add.setAttribute('aria-label', 'Top up ' + key.name);
  form.append(amount, add);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    keyAction(add, 'keys/' + encodeURIComponent(key.id) + '/topup', { amount: amount.value.trim() });
  });
  topUp.appendChild(form);
  const toggle = el('td');
  const button = el('button', key.disabled ? '' : 'danger', key.disabled ? 'Enable' : 'Disable');
  button.type = 'button';
  button.dataset.action = key.disabled ? 'enable' : 'disable';
  button.setAttribute('aria-label', (key.disabled ? 'Enable ' : 'Disable ') + key.name);
  button.addEventListener('click', () => keyAction(button, 'keys/' + encodeURIComponent(key.id) + '/' + button.dataset.action));
  toggle.appendChild(button);
  tr.append(name, id, balance, held, status, topUp, toggle);
  return tr;
}

async function keyAction(button, path, body) {
  button.disabled = true;
  try {
    await request('POST', path, body);
    showError('keys-error', null);
    await loadKeys();
  } catch (error) {
    showError('keys-error', error);
    button.disabled = false;
  }
}

$('create-key').addEventListener('submit', async (event) => {
  event.preventDefault();
  const body = { name: $('new-key-name').value, balance: $('new-key-balance').value.trim() };
  if ($('new-key-cap').value.trim() !== '') body.spend_cap = $('new-key-cap').value.trim();
  try {
    const created = await request('POST', 'keys', body);
    showError('keys-error', null);
    $('create-key').reset();
    $('new-secret-name').textContent = '"' + created.name + '"';
    $('new-secret-value').value = created.key;
    $('new-secret').hidden = false;
    $('new-secret-value').select();
    await loadKeys();
  } catch (error) {
    showError('keys-error', error);
  }
});
$('copy-secret').addEventListener('click', async () => {
  $('new-secret-value').select();
  try { await navigator.clipboard.writeText($('new-secret-value').value); toast('Copied.'); } catch (error) { toast('Select the key and copy it (Ctrl+C).'); }
});
$('dismiss-secret').addEventListener('click', () => {
  // Gone from the page for good: the relay cannot show it again.
  $('new-secret-value').value = '';
  $('new-secret').hidden = true;
});

/* Spend per key */

const SVG_NS = 'http://www.w3.org/2000/svg';
function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

async function loadSpend() {
  const bucket = $('spend-bucket').value;
  const answer = await request('GET', 'spend?bucket=' + bucket);
  drawSpend(answer);
}

/** Stacked bars, one per bucket from \`since\` to now, one colour per key; the legend holds each key's total. */
function drawSpend(answer) {
  const size = answer.bucket === 'hour' ? 3600000 : 86400000;
  const first = Math.floor(Date.parse(answer.since) / size) * size;
  const count = Math.max(1, Math.floor((Date.now() - first) / size) + 1);
  const keys = [];
  const totals = new Map();
  const stacks = Array.from({ length: count }, () => []);
  for (const row of answer.data) {
    if (!totals.has(row.key.id)) { keys.push(row.key); totals.set(row.key.id, 0n); }
    totals.set(row.key.id, totals.get(row.key.id) + BigInt(row.total_nano));
    const index = Math.floor((Date.parse(row.start) - first) / size);
    if (index >= 0 && index < count) stacks[index].push(row);
  }
  let max = 0n;
  for (const stack of stacks) { const sum = stack.reduce((a, r) => a + BigInt(r.total_nano), 0n); if (sum > max) max = sum; }
  const W = 1400, H = 240, left = 90, bottom = 24, top = 12;
  const plot = H - bottom - top;
  const width = (W - left - 10) / count;
  const chart = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': 'Spend per key per ' + answer.bucket + ': ' + (keys.length ? keys.map((k) => k.name + ' ' + formatNano(String(totals.get(k.id))) + ' USD').join(', ') : 'nothing charged') });
  chart.appendChild(svg('line', { class: 'axis', x1: left, y1: top + plot, x2: W - 10, y2: top + plot }));
  chart.appendChild(svg('line', { class: 'axis', x1: left, y1: top, x2: left, y2: top + plot }));
  chart.appendChild(svg('text', { class: 'tick', x: left - 6, y: top + 8, 'text-anchor': 'end' }, axisUsd(max)));
  chart.appendChild(svg('text', { class: 'tick', x: left - 6, y: top + plot, 'text-anchor': 'end' }, '0'));
  const label = (ms) => answer.bucket === 'hour' ? new Date(ms).toISOString().slice(11, 16) : new Date(ms).toISOString().slice(5, 10);
  const every = Math.ceil(count / 8);
  stacks.forEach((stack, i) => {
    const x = left + i * width;
    if (i % every === 0) chart.appendChild(svg('text', { class: 'tick', x: x + width / 2, y: H - 6, 'text-anchor': 'middle' }, label(first + i * size)));
    let y = top + plot;
    for (const row of stack) {
      // Scaled in bigint, then to pixels: a float never holds the money itself.
      const h = max === 0n ? 0 : Number((BigInt(row.total_nano) * 10000n) / max) / 10000 * plot;
      y -= h;
      const bar = svg('rect', { class: 'bar k' + (keys.findIndex((k) => k.id === row.key.id) % 8), x: x + 1, y, width: Math.max(1, width - 2), height: Math.max(h, 0.5) });
      bar.dataset.keyName = row.key.name;
      bar.dataset.totalNano = row.total_nano;
      bar.appendChild(svg('title', {}, row.key.name + ' · ' + label(Date.parse(row.start)) + ' · ' + formatNano(row.total_nano) + ' USD, ' + row.charge_count + ' charge(s)'));
      chart.appendChild(bar);
    }
  });
  $('spend-chart').textContent = '';
  $('spend-chart').appendChild(chart);
  const legend = $('spend-legend');
  legend.textContent = '';
  keys.forEach((key, i) => {
    const item = el('li');
    item.dataset.keyName = key.name;
    item.dataset.totalNano = String(totals.get(key.id));
    item.append(el('span', 'swatch k' + (i % 8)), el('span', '', key.name + ': '), el('strong', 'mono', formatNano(String(totals.get(key.id))) + ' USD'));
    legend.appendChild(item);
  });
  if (keys.length === 0) legend.appendChild(el('li', 'idle', 'Nothing charged in this period.'));
}

$('spend-form').addEventListener('submit', (event) => {
  event.preventDefault();
  loadSpend().then(() => showError('spend-error', null), (error) => showError('spend-error', error));
});

/* Ended sessions: a cursor per page, so sessions ending meanwhile do not shift the pages. */

const ended = { key: '', limit: 20, cursors: [''], lastId: null };

async function loadEnded() {
  const params = new URLSearchParams({ limit: String(ended.limit) });
  if (ended.key) params.set('key', ended.key);
  const before = ended.cursors[ended.cursors.length - 1];
  if (before) params.set('before', before);
  const page = await request('GET', 'sessions/ended?' + params);
  const body = $('ended-rows');
  body.textContent = '';
  for (const s of page.data) {
    const tr = el('tr');
    tr.dataset.sessionId = s.id;
    const id = el('td', 'mono', s.id.slice(0, 17) + '…');
    id.title = s.id;
    const reason = el('td', '', s.end_reason);
    if (s.status === 'recovered') reason.appendChild(el('span', 'sub', 'recovered'));
    const cost = el('td', 'num mono', formatNano(s.cost_nano));
    cost.dataset.field = 'cost';
    cost.appendChild(el('span', 'sub', s.charge_count === 1 ? '1 charge' : s.charge_count + ' charges'));
    tr.append(id, el('td', '', s.key.name), reason, el('td', 'num', formatDuration(s.duration_ms)), cost, el('td', '', formatTime(s.started_at)), el('td', '', formatTime(s.ended_at)));
    body.appendChild(tr);
  }
  ended.lastId = page.last_id;
  $('ended-empty').hidden = page.data.length > 0;
  $('ended-older').disabled = !page.has_more;
  $('ended-newer').disabled = ended.cursors.length === 1;
  $('ended-page').textContent = 'page ' + ended.cursors.length;
}

function showEnded() {
  loadEnded().then(
    () => showError('ended-error', null),
    (error) => {
      // Rows of an earlier search would read as the answer to this one.
      $('ended-rows').textContent = '';
      $('ended-older').disabled = true;
      showError('ended-error', error);
    },
  );
}

$('ended-form').addEventListener('submit', (event) => {
  event.preventDefault();
  ended.key = $('ended-key').value.trim();
  ended.limit = Number($('ended-limit').value);
  ended.cursors = [''];
  showEnded();
});
$('ended-older').addEventListener('click', () => { if (ended.lastId) { ended.cursors.push(ended.lastId); showEnded(); } });
$('ended-newer').addEventListener('click', () => { if (ended.cursors.length > 1) { ended.cursors.pop(); showEnded(); } });

function loadLedgerViews() {
  loadKeys().catch((error) => showError('keys-error', error));
  loadSpend().catch((error) => showError('spend-error', error));
  showEnded();
}
`;
