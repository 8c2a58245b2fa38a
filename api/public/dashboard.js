// The dashboard: plain JS and SVG, no build step. Reads the same endpoints as everyone else.
const SVG = 'http://www.w3.org/2000/svg';
const Q = ['q1', 'q2', 'q3', 'q4'];
const COLORS = ['var(--q1)', 'var(--q2)', 'var(--q3)', 'var(--q4)'];
const $ = (sel) => document.querySelector(sel);
const fmt = (n) => Number(n).toLocaleString('en-US');

function el(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function row(cells, numeric = []) {
  const tr = document.createElement('tr');
  cells.forEach((c, i) => {
    const td = document.createElement('td');
    td.textContent = c ?? '';
    if (numeric.includes(i)) td.className = 'n';
    tr.append(td);
  });
  return tr;
}

// With API_KEY set, routes with row-level data answer 401 without it: the page asks for the key
// once, keeps it in this tab's sessionStorage and sends it as a Bearer token from then on.
const KEY = 'hr.apiKey';
let asking;

function askForKey(refused) {
  asking ??= new Promise((resolve) => {
    const dialog = $('#key-dialog');
    const input = $('#key-input');
    $('#key-why').textContent = refused
      ? 'That key was refused. Enter the API key of this service.'
      : 'This service asks for its API key to show this. It is kept in this tab only (session storage).';
    input.value = '';
    dialog.addEventListener('close', () => {
      asking = undefined;
      resolve(dialog.returnValue === 'ok' && input.value ? input.value.trim() : undefined);
    }, { once: true });
    dialog.showModal();
  });
  return asking;
}

/** fetch with the stored key; a 401 asks for the key (twice at most) and tries again. */
async function call(url, accept = 'application/json') {
  for (let tries = 0; ; tries++) {
    const key = sessionStorage.getItem(KEY);
    const headers = { accept };
    if (key) headers.authorization = `Bearer ${key}`;
    const res = await fetch(url, { headers });
    if (res.status !== 401 || tries >= 2) return res;
    const given = await askForKey(Boolean(key));
    if (!given) return res;
    sessionStorage.setItem(KEY, given);
  }
}

async function failure(res) {
  const body = await res.json().catch(() => ({}));
  return new Error(body?.error?.message ?? `${res.status} ${res.statusText}`);
}

async function getJson(url) {
  const res = await call(url);
  if (!res.ok) throw await failure(res);
  return { body: await res.json(), res };
}

/** The first `max` rejects of a load, read from the NDJSON stream (the rest is not downloaded). */
async function showRejects(load, max = 200) {
  const section = $('#rejects');
  const tbody = $('#rejects-table tbody');
  section.hidden = false;
  $('#rejects-title').textContent = `Rejected lines of the ${load.table} load`;
  $('#rejects-note').textContent = 'Loading…';
  tbody.replaceChildren();
  try {
    const res = await call(`/loads/${load.id}/rejects`, 'application/x-ndjson');
    if (!res.ok) throw await failure(res);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    const rows = [];
    let rest = '';
    while (rows.length < max) {
      const { done, value } = await reader.read();
      if (done) break;
      const lines = (rest + value).split('\n');
      rest = lines.pop();
      for (const l of lines) if (l && rows.length < max) rows.push(JSON.parse(l));
    }
    await reader.cancel().catch(() => {});
    tbody.replaceChildren(...rows.map((r) => {
      const tr = row([r.line, r.errors.map((e) => (e.field ? `${e.field} ${e.message}` : e.message)).join('; '), r.raw], [0]);
      tr.children[2].className = 'raw';
      return tr;
    }));
    const more = load.rejected > rows.length ? ` (the first ${fmt(rows.length)} of ${fmt(load.rejected)})` : '';
    $('#rejects-note').textContent = rows.length ? `Line in the file, why, and the line as read${more}.` : 'None kept (rejects are pruned after REJECT_RETENTION_DAYS).';
  } catch (err) {
    $('#rejects-note').textContent = `Rejects unavailable: ${err.message}`;
  }
  section.scrollIntoView({ block: 'nearest' });
}

function message(container, text, isError = false) {
  container.replaceChildren();
  const p = document.createElement('p');
  p.textContent = text;
  p.className = isError ? 'error' : 'muted';
  container.append(p);
}

/** Horizontal bars, one per label; `segments` stacks values; `mean` draws a vertical line. */
// `width` is the drawing's own width: near the width it is shown at, so its text stays readable.
function barChart({ rows, label, segments, colors, mean, title, width = 900 }) {
  const labelW = 190, barH = 22, gap = 6, right = 60, top = mean === undefined ? 8 : 24;
  const totals = rows.map((r) => segments.reduce((s, k) => s + Number(r[k] ?? 0), 0));
  const max = Math.max(1, ...totals, mean ?? 0);
  const scale = (v) => (v / max) * (width - labelW - right);
  const height = top + rows.length * (barH + gap) + 8;
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title });
  svg.append(el('title', {}, title));
  rows.forEach((r, i) => {
    const y = top + i * (barH + gap);
    const name = String(r[label]);
    svg.append(el('text', { x: labelW - 8, y: y + barH / 2 + 4, 'text-anchor': 'end' }, name.length > 28 ? `${name.slice(0, 27)}…` : name));
    let x = labelW;
    segments.forEach((k, j) => {
      const v = Number(r[k] ?? 0);
      if (v <= 0) return;
      const w = scale(v);
      const rect = el('rect', { x, y, width: Math.max(w, 0.5), height: barH, fill: colors[j], 'data-series': k });
      rect.append(el('title', {}, `${name} ${k.toUpperCase() === k ? k : k.toUpperCase()}: ${fmt(v)}`));
      svg.append(rect);
      x += w;
    });
    svg.append(el('text', { x: x + 6, y: y + barH / 2 + 4 }, fmt(totals[i])));
  });
  if (mean !== undefined) {
    const x = labelW + scale(mean);
    svg.append(el('line', { x1: x, x2: x, y1: top - 6, y2: height - 4, stroke: 'var(--mean)', 'stroke-width': 2, 'stroke-dasharray': '5 4', 'data-series': 'mean' }));
    svg.append(el('text', { x, y: top - 10, 'text-anchor': 'middle' }, `mean ${mean.toFixed(1)}`));
  }
  return svg;
}

async function loadAnalytics(year) {
  const chart = $('#hbq-chart');
  const amChart = $('#am-chart');
  const tbody = $('#hbq-table tbody');
  try {
    const [{ body: hires, res }, { body: above }] = await Promise.all([
      getJson(`/analytics/hires-by-quarter?year=${year}`),
      getJson(`/analytics/departments-above-mean?year=${year}`),
    ]);
    const refreshed = res.headers.get('x-warehouse-refreshed-at') ?? res.headers.get('last-modified');
    $('#refreshed').textContent = refreshed ? `Warehouse refreshed ${new Date(refreshed).toLocaleString()}` : 'Warehouse data';

    const byDept = new Map();
    for (const r of hires) {
      const d = byDept.get(r.department) ?? { department: r.department, q1: 0, q2: 0, q3: 0, q4: 0 };
      for (const q of Q) d[q] += r[q];
      byDept.set(r.department, d);
    }
    const depts = [...byDept.values()];
    tbody.replaceChildren(...hires.map((r) => row([r.department, r.job, r.q1, r.q2, r.q3, r.q4], [2, 3, 4, 5])));
    $('#hbq-count').textContent = fmt(hires.length);
    if (depts.length === 0) message(chart, `No hires in ${year}.`);
    else chart.replaceChildren(barChart({ rows: depts, label: 'department', segments: Q, colors: COLORS, title: `Hires by quarter per department in ${year}` }));

    const totals = depts.map((d) => Q.reduce((s, q) => s + d[q], 0));
    const mean = totals.length ? totals.reduce((a, b) => a + b, 0) / totals.length : 0;
    if (above.length === 0) message(amChart, `No department hired above the mean in ${year}.`);
    else amChart.replaceChildren(barChart({ rows: above, label: 'department', segments: ['hired'], colors: ['var(--q1)'], mean, width: 560, title: `Departments hiring above the mean (${mean.toFixed(1)}) in ${year}` }));
  } catch (err) {
    message(chart, `Hires by quarter unavailable: ${err.message}`, true);
    message(amChart, `Departments above the mean unavailable: ${err.message}`, true);
    tbody.replaceChildren();
    $('#refreshed').textContent = '';
  }
}

async function loadTables() {
  const loads = $('#loads tbody');
  try {
    const { body } = await getJson('/loads');
    const list = Array.isArray(body) ? body : body.loads ?? [];
    loads.replaceChildren(...list.slice(0, 20).map((l) => {
      const source = l.source === 'inbox' ? `inbox: ${l.sourceName ?? ''}` : (l.source ?? '');
      const tr = row([l.table, l.status, fmt(l.rowsRead), l.rejected > 0 ? '' : fmt(l.rejected), new Date(l.createdAt).toLocaleString(), source], [2, 3]);
      tr.children[1].className = `status-${l.status}`;
      if (l.rejected > 0) {
        const show = document.createElement('button');
        show.type = 'button';
        show.className = 'show-rejects';
        show.textContent = fmt(l.rejected);
        show.setAttribute('aria-label', `Show the ${fmt(l.rejected)} rejected lines of this ${l.table} load`);
        show.addEventListener('click', () => showRejects(l));
        tr.children[3].append(show);
      }
      return tr;
    }));
    if (list.length === 0) loads.replaceChildren(row(['No loads yet', '', '', '', '', '']));
  } catch (err) {
    loads.replaceChildren(row([`Loads unavailable: ${err.message}`]));
  }
  const landing = $('#landing tbody');
  try {
    const { body } = await getJson('/landing');
    const short = (id) => (id ? id.slice(0, 8) : '');
    const rows = [
      ...body.inbox.map((f) => row([f.name, f.ignored ? 'inbox (ignored)' : f.table ? 'inbox' : 'inbox (no table)', '', ''])),
      ...body.processing.map((f) => row([f.name, 'processing', `${short(f.loadId)} ${f.status ?? ''}`.trim(), ''])),
      ...body.done.slice(0, 20).map((f) => row([f.name, `done ${f.date}`, `${short(f.loadId)} ${f.status ?? ''}`.trim(), f.companion ? f.companion.split('/').pop() : ''])),
      ...body.failed.slice(0, 20).map((f) => row([f.name, `failed ${f.date}`, `${short(f.loadId)} ${f.status ?? ''}`.trim(), f.companion ? f.companion.split('/').pop() : ''])),
    ];
    landing.replaceChildren(...rows);
    if (rows.length === 0) landing.replaceChildren(row(['The inbox is empty', '', '', '']));
  } catch (err) {
    landing.replaceChildren(row([`Landing inbox unavailable: ${err.message}`]));
  }
  const backups = $('#backups tbody');
  try {
    const { body } = await getJson('/backups');
    const list = Array.isArray(body) ? body : body.backups ?? [];
    backups.replaceChildren(...list.slice(0, 20).map((b) => row([b.table, fmt(b.rows), fmt(b.bytes), new Date(b.createdAt).toLocaleString()], [1, 2])));
    if (list.length === 0) backups.replaceChildren(row(['No backups yet', '', '', '']));
  } catch (err) {
    backups.replaceChildren(row([`Backups unavailable: ${err.message}`]));
  }
}

function init() {
  const params = new URLSearchParams(location.search);
  const year = Number(params.get('year') ?? 2021);
  const select = $('#year');
  const now = new Date().getUTCFullYear();
  for (let y = Math.max(now, 2021); y >= 2000; y--) select.append(new Option(String(y), String(y), false, y === year));
  const refresh = () => {
    const y = select.value;
    history.replaceState(null, '', `?year=${y}`);
    return Promise.all([loadAnalytics(y), loadTables()]).then(() => document.body.setAttribute('data-ready', 'true'));
  };
  select.addEventListener('change', refresh);
  $('#reload').addEventListener('click', refresh);
  refresh();
}

init();
