// otalab dashboard: reads otalab-server's REST API and WebSocket event stream
// (Particle's event records, PROTOCOL.md 9) with the API's token rules. Plain
// JavaScript, no build step; events are batched and drawn once per animation
// frame so a fleet of 1,000 devices updating at once stays responsive.
'use strict';

const $ = (s) => document.querySelector(s);
const esc = (s) => String(s == null ? '' : s).replace(/[&<>"']/g,
  (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const fmtBytes = (n) => n == null || isNaN(n) ? '-' : n < 1024 ? n + ' B' :
  n < 1048576 ? (n / 1024).toFixed(1) + ' KB' : (n / 1048576).toFixed(2) + ' MB';
const fmtMs = (ms) => ms == null ? '-' : ms < 1000 ? ms + ' ms' : (ms / 1000).toFixed(1) + ' s';
const now = () => Date.now();

const MAX_ROWS = 200;        // device rows drawn (filter to see others)
const MAX_EVENTS = 500;      // events kept in memory
const FETCH_CONCURRENCY = 6; // device detail requests in flight
const JOB_SHOW_MS = 120000;  // a finished job's bar stays this long

const st = {
  token: sessionStorage.getItem('otalab.token') || '',
  releases: [], bySysver: new Map(),
  devices: new Map(),        // id -> device state
  order: [],                 // ids, sorted
  events: [], inbox: [],     // events seen, events not yet applied
  dirty: new Set(), fleetDirty: true, eventsDirty: false, orderDirty: true,
  frame: 0, ws: null, wsOpen: false,
  fetchHot: new Set(), fetchQ: new Set(), inFlight: 0, // drawn rows first, then the rest
  chartW: 0, fleetTimer: 0, fullDrawn: 0, fullTimer: 0,
  selected: null, planFor: null,
  thr: new Array(60).fill(0), thrSec: Math.floor(now() / 1000),
  history: [],               // [{t, counts: {release: n}}]
};

// ---- REST ----
async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (st.token) headers.Authorization = 'Bearer ' + st.token;
  const r = await fetch(path, Object.assign({}, opts, { headers }));
  if (r.status === 401) { showLogin('The access token was refused.'); throw new Error('401'); }
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  return { status: r.status, body };
}

function showLogin(msg) {
  $('#login').hidden = false;
  $('#login-error').textContent = msg || '';
  if (st.ws) { st.ws.onclose = null; st.ws.close(); st.ws = null; setConn(false); }
}

$('#login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  let tok = $('#login-token').value.trim();
  const user = $('#login-user').value.trim(), pass = $('#login-pass').value;
  if (!tok && user) {
    const body = new URLSearchParams({ grant_type: 'password', username: user, password: pass });
    const r = await fetch('/oauth/token', { method: 'POST', body,
      headers: { Authorization: 'Basic ' + btoa('particle:particle') } });
    const j = await r.json().catch(() => ({}));
    if (!r.ok || !j.access_token) { $('#login-error').textContent = j.error_description || j.error || 'Login failed.'; return; }
    tok = j.access_token;
  }
  st.token = tok;
  sessionStorage.setItem('otalab.token', tok);
  $('#login').hidden = true;
  start();
});
$('#logout').addEventListener('click', () => {
  sessionStorage.removeItem('otalab.token'); st.token = ''; showLogin('');
});

// ---- device state ----
function dev(id) {
  let d = st.devices.get(id);
  if (!d) {
    d = { id, name: id, product_id: 0, connected: false, detail: null, release: null,
          safe: false, jobs: new Map(), lastFetch: 0, estimate: null, estimateAsked: false,
          used: 0, row: null };
    st.devices.set(id, d);
    st.orderDirty = true;
  }
  return d;
}

function markDirty(d) {
  st.dirty.add(d.id);
  st.fleetDirty = true;
  schedule();
}

// A device's REST view: at once for a row in view or the selected device; the
// list (loadList) keeps the others' release, safe mode and running job.
const hot = (d) => !!d && ((!!d.row && d.inView) || d.id === st.selected);
const rowSeen = new IntersectionObserver((entries) => entries.forEach((e) => {
  const d = st.devices.get(e.target.dataset.id);
  if (!d || d.row !== e.target) return;
  d.inView = e.isIntersecting;
  if (d.inView && d.rowStale) { d.rowStale = false; d.row.innerHTML = rowHtml(d); }
  if (d.inView && now() - d.lastFetch > 2000) wantFetch(d.id);
}));
function wantFetch(id) {
  (hot(st.devices.get(id)) ? st.fetchHot : st.fetchQ).add(id);
  pump();
}

function pump() {
  while (st.inFlight < FETCH_CONCURRENCY && (st.fetchHot.size || st.fetchQ.size)) {
    const q = st.fetchHot.size ? st.fetchHot : st.fetchQ;
    const id = q.values().next().value;
    q.delete(id);
    st.fetchQ.delete(id);
    st.inFlight++;
    fetchDevice(id).catch(() => {}).finally(() => { st.inFlight--; pump(); });
  }
}

async function fetchDevice(id) {
  const d = dev(id);
  d.lastFetch = now();
  const r = await api('/v1/devices/' + id);
  if (r.status !== 200 || !r.body) return;
  applyDetail(d, r.body);
}

const modKey = (m) => typeof m === 'string' ? m : m ? (m.f || '?') + '/' + m.n + ' v' + m.v : '?';

// Bytes that arrived since the last look count as throughput, except what a
// device had sent before the page first saw it.
function mergeJob(d, j, active, initial) {
  if (!j || j.job == null) return;
  const old = d.jobs.get(j.job);
  const job = Object.assign({}, old || {}, j);
  const before = old ? old.sent || 0 : 0;
  if (!initial && j.sent > before) addThroughput(j.sent - before);
  if (!active && (j.result || j.state === 'DONE' || j.state === 'FAILED')) job.ended = job.ended || now();
  job.seen = now();
  d.jobs.set(j.job, job);
}

// The API reports a developer device's product_id as its platform id (10, as
// Particle does); "product": false says so. Here 0 means developer.
function productOf(b) {
  return b.product === false ? 0 : b.product_id || 0;
}

function applyDetail(d, b) {
  const initial = !d.detail;
  d.detail = b;
  d.connected = !!b.connected;
  if (b.product_id != null) d.product_id = productOf(b);
  d.release = b.system_firmware_version || releaseOfModules(b.modules) || null;
  d.safe = b.safe_mode != null ? !!b.safe_mode : inSafeMode(b.describe);
  if (b.ota) mergeJob(d, b.ota, true, initial);
  (b.ota_queue || []).forEach((j) => mergeJob(d, j, true, initial));
  if (b.last_ota) mergeJob(d, b.last_ota, false, initial);
  (b.ota_history || b.jobs || []).forEach((j) => mergeJob(d, j, false, initial));
  const du = b.data_usage;
  if (du && typeof du === 'object') {
    d.used = num(du.total) ?? num(du.wire) ?? num(du.total_bytes) ?? num(du.bytes) ?? sumNums(du);
    const est = num(du.estimate) ?? num(du.planner_estimate) ?? num(du.estimate_wire);
    if (est != null) d.estimate = est;
  } else {
    let s = 0; d.jobs.forEach((j) => { s += j.sent || 0; }); d.used = s;
  }
  if ((d.safe || b.ota) && !d.estimateAsked) { d.estimateAsked = true; askEstimate(d); }
  markDirty(d);
}

const num = (v) => typeof v === 'number' ? v : null;
function sumNums(o) { let s = 0; for (const k in o) if (typeof o[k] === 'number') s += o[k]; return s; }

async function askEstimate(d) {
  try {
    const r = await api('/v1/devices/' + d.id + '/plan?product=' + (d.product_id ? 1 : 0));
    if (r.status === 200 && r.body && r.body.steps && r.body.steps.length && d.estimate == null) {
      d.estimate = r.body.wire_bytes;
      markDirty(d);
    }
  } catch (e) { /* shown as '-' */ }
}

function releaseOfModules(mods) {
  let v = null;
  (mods || []).forEach((m) => { if (m.f === 's') v = v == null ? m.v : Math.min(v, m.v); });
  const r = v == null ? null : st.bySysver.get(v);
  return r ? r.name : v == null ? null : 'system v' + v;
}

// The cloud's reading of safe mode (core/describe): a main module that ran the
// dependency check and failed it, or an unmet dependency of the user module.
function inSafeMode(desc) {
  if (!desc || !Array.isArray(desc.m)) return false;
  for (const m of desc.m) {
    if ((m.l || 'm') !== 'm') continue;
    if (m.vc != null && (m.vc & 4) && !(m.vv & 4)) return true;
    if (m.f === 'u') for (const dep of (m.d || [])) if (!depMet(desc, dep)) return true;
  }
  return false;
}
function depMet(desc, dep) {
  if (!dep || !dep.f || dep.f === 'n') return true;
  const m = (desc.m || []).find((x) => x.f === dep.f && String(x.n) === String(dep.n) && (x.l || 'm') === 'm');
  return !!m && m.v >= dep.v;
}

// ---- events (WebSocket) ----
function setConn(on) {
  st.wsOpen = on;
  const c = $('#conn');
  c.textContent = on ? 'live' : 'offline';
  c.className = 'pill ' + (on ? 'on' : 'off');
}

function openStream() {
  if (st.ws) return;
  const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host +
    '/v1/events/ws' + (st.token ? '?access_token=' + encodeURIComponent(st.token) : '');
  const ws = new WebSocket(url);
  st.ws = ws;
  ws.onopen = () => setConn(true);
  ws.onmessage = (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    st.inbox.push(ev);
    schedule();
  };
  ws.onclose = () => {
    setConn(false);
    st.ws = null;
    if (st.token !== null && $('#login').hidden) setTimeout(openStream, 2000);
  };
}

function applyEvent(ev) {
  ev.seq = ++evSeq;
  ev.t = ev.published_at ? Date.parse(ev.published_at) || now() : now();
  st.events.push(ev);
  if (st.events.length > MAX_EVENTS) st.events.splice(0, st.events.length - MAX_EVENTS);
  st.eventsDirty = true;
  const id = ev.coreid;
  if (!id || id === 'particle-internal' || !/^[0-9a-f]{24}$/.test(id)) return;
  const d = dev(id);
  const name = ev.name || '';
  if (name === 'spark/status') {
    if (ev.data === 'online') d.connected = true;
    if (ev.data === 'offline') d.connected = false;
  } else if (name === 'otalab/ota/progress') {
    try {
      const p = JSON.parse(ev.data);
      let cur = null;
      d.jobs.forEach((j) => { if (!j.ended && modKey(j.module) === p.module) cur = j; });
      if (cur) {
        if (p.sent > (cur.sent || 0)) addThroughput(p.sent - (cur.sent || 0));
        cur.sent = p.sent; cur.total = p.total; cur.seen = now();
      } else {
        d.progress = p;
      }
    } catch (e) { /* not JSON: only logged */ }
  } else if (name.startsWith('spark/status/safe-mode') || name === 'spark/device/safemode') {
    d.safe = true;
  }
  markDirty(d);
  // the event tells what changed; the device's REST view tells the rest (for
  // a drawn row; the list, once a second, for the others)
  if (d.detail && !hot(d)) return;
  if (now() - d.lastFetch > 300 || name === 'spark/flash/status') wantFetch(id);
  else if (!d.fetchLater) d.fetchLater = setTimeout(() => { d.fetchLater = 0; wantFetch(id); }, 300);
}

function addThroughput(bytes) {
  const s = Math.floor(now() / 1000);
  while (st.thrSec < s) { st.thr.shift(); st.thr.push(0); st.thrSec++; }
  st.thr[st.thr.length - 1] += bytes;
}

// ---- one frame: apply what arrived, draw what changed ----
function schedule() {
  if (!st.frame) st.frame = requestAnimationFrame(frame);
}

function frame() {
  st.frame = 0;
  const inbox = st.inbox; st.inbox = [];
  for (const ev of inbox) applyEvent(ev);
  let full = false;
  if (st.orderDirty && now() - st.fullDrawn >= 500) { // new devices: a full redraw at most twice a second
    st.order = Array.from(st.devices.keys()).sort();
    st.orderDirty = false;
    st.fullDrawn = now();
    renderTable(true);
    full = true;
  } else if (st.orderDirty && !st.fullTimer) {
    st.fullTimer = setTimeout(() => { st.fullTimer = 0; schedule(); }, 510);
  }
  if (!full && !st.orderDirty && st.dirty.size) renderTable(false); // else the full redraw comes
  if (st.selected && st.dirty.has(st.selected)) renderDetail();
  st.dirty.clear();
  if (st.eventsDirty) renderEvents(false);
  if (st.fleetDirty) renderFleet();
}

// ---- devices table ----
function devVisible(d) {
  const f = $('#dev-filter').value.trim().toLowerCase();
  if (!f) return true;
  return d.id.includes(f) || String(d.name).toLowerCase().includes(f) || String(d.release || '').includes(f);
}

function otaBars(d) {
  const t = now(), out = [];
  const jobs = Array.from(d.jobs.values()).filter((j) => !j.ended || t - j.ended < JOB_SHOW_MS)
    .sort((a, b) => a.job - b.job);
  for (const j of jobs) {
    const pct = j.total ? Math.min(100, Math.floor(100 * (j.sent || 0) / j.total)) : 0;
    const failed = j.result === 'failed' || j.state === 'FAILED';
    const done = !failed && (j.result === 'ok' || j.state === 'DONE');
    const shown = done ? 100 : pct;
    out.push(`<div class="progress ${done ? 'done' : failed ? 'failed' : ''}" data-module="${esc(modKey(j.module))}" data-pct="${shown}">` +
      `<i style="width:${shown}%"></i><span>${esc(modKey(j.module))} ${shown} % ${esc(failed ? 'failed' : done ? 'done' : (j.state || '').toLowerCase())}</span></div>`);
  }
  if (!jobs.length && d.progress && d.progress.total) {
    const pct = Math.min(100, Math.floor(100 * d.progress.sent / d.progress.total));
    out.push(`<div class="progress" data-module="${esc(d.progress.module)}" data-pct="${pct}"><i style="width:${pct}%"></i><span>${esc(d.progress.module)} ${pct} %</span></div>`);
  }
  return out.join('') || '<span class="muted">-</span>';
}

function rowHtml(d) {
  const kind = d.product_id ? `<span class="pill prod">product ${esc(d.product_id)}</span>` : '<span class="pill">developer</span>';
  const est = d.estimate != null ? fmtBytes(d.estimate) : '-';
  const pct = d.estimate ? ` (${Math.round(100 * d.used / d.estimate)} %)` : '';
  return `<td class="id" title="${esc(d.id)}">${esc(d.name !== d.id ? d.name + ' ' : '')}<span class="muted">${esc(d.id)}</span></td>` +
    `<td class="release">${esc(d.release || '?')}</td><td>${kind}</td>` +
    `<td><span class="pill ${d.connected ? 'on' : 'off'}">${d.connected ? 'online' : 'offline'}</span></td>` +
    `<td class="safe">${d.safe ? '<span class="pill safe">safe mode</span>' : 'no'}</td>` +
    `<td class="ota">${otaBars(d)}</td><td class="data">${fmtBytes(d.used)} / ${est}${pct}</td>`;
}

function renderTable(full) {
  const tb = $('#devices tbody');
  if (full) {
    tb.textContent = '';
    rowSeen.disconnect();
    st.devices.forEach((d) => { d.row = null; d.inView = false; });
    let shown = 0, match = 0;
    for (const id of st.order) {
      const d = st.devices.get(id);
      if (!devVisible(d)) continue;
      match++;
      if (shown >= MAX_ROWS) continue;
      const tr = document.createElement('tr');
      tr.className = 'dev' + (id === st.selected ? ' sel' : '');
      tr.dataset.id = id;
      tr.innerHTML = rowHtml(d);
      tb.appendChild(tr);
      d.row = tr;
      shown++;
      rowSeen.observe(tr);
    }
    $('#dev-more').textContent = match > shown ? `showing ${shown} of ${match} devices: filter to narrow` : `${st.devices.size} devices`;
    return;
  }
  for (const id of st.dirty) { // rows out of view: drawn when they come into view
    const d = st.devices.get(id);
    if (d && d.row) {
      if (d.inView) d.row.innerHTML = rowHtml(d);
      else d.rowStale = true;
    }
  }
}

$('#devices tbody').addEventListener('click', (ev) => {
  const tr = ev.target.closest('tr.dev');
  if (tr) select(tr.dataset.id);
});
$('#dev-filter').addEventListener('input', () => renderTable(true));

// ---- device detail ----
function select(id) {
  st.selected = id;
  document.querySelectorAll('#devices tr.sel').forEach((r) => r.classList.remove('sel'));
  const d = st.devices.get(id);
  if (d && d.row) d.row.classList.add('sel');
  $('#detail').hidden = false;
  $('#detail-id').textContent = id;
  $('#detail-plan').textContent = '';
  wantFetch(id);
  renderDetail();
  loadPlan();
}
$('#detail-close').addEventListener('click', () => { st.selected = null; $('#detail').hidden = true; });

function renderDetail() {
  const d = st.devices.get(st.selected);
  if (!d) return;
  const b = d.detail || {};
  $('#detail-head').innerHTML = `<dl><dt>Release</dt><dd class="detail-release">${esc(d.release || '?')}</dd>` +
    `<dt>Kind</dt><dd>${d.product_id ? 'product ' + esc(d.product_id) : 'developer'}</dd>` +
    `<dt>Online</dt><dd>${d.connected ? 'yes' : 'no'} ${b.last_ip_address ? '(' + esc(b.last_ip_address) + ')' : ''}</dd>` +
    `<dt>Last heard</dt><dd>${esc(b.last_heard || '-')}</dd><dt>Safe mode</dt><dd>${d.safe ? 'yes' : 'no'}</dd>` +
    `<dt>Data used</dt><dd>${fmtBytes(d.used)} (planner estimate ${d.estimate != null ? fmtBytes(d.estimate) : '-'})</dd></dl>`;
  const desc = b.describe && Array.isArray(b.describe.m) ? b.describe : null;
  const mods = desc ? desc.m.filter((m) => m.f) : (b.modules || []);
  $('#detail-modules tbody').innerHTML = mods.map((m) => {
    const deps = (m.d || []).filter((x) => x.f && x.f !== 'n');
    const met = deps.every((x) => depMet(desc, x));
    const rel = m.f === 's' || m.f === 'b' ? (st.bySysver.get(m.v) || {}).name || '' : '';
    return `<tr><td>${esc(fnName(m.f))}</td><td>${esc(m.n)}</td><td>${esc(m.v)}</td><td>${esc(rel)}</td>` +
      `<td>${deps.map((x) => esc(x.f + '/' + x.n + ' v' + x.v)).join(', ') || '-'}</td>` +
      `<td class="${met ? 'ok' : 'bad'}">${deps.length ? (met ? 'yes' : 'no') : '-'}</td></tr>`;
  }).join('');
  const jobs = Array.from(d.jobs.values()).sort((a, b2) => b2.job - a.job);
  $('#detail-jobs tbody').innerHTML = jobs.map((j) => `<tr><td>${esc(j.job)}</td><td>${esc(modKey(j.module))}</td>` +
    `<td>${esc(j.file || '')}</td><td>${esc(j.result || j.state || '')}${j.why ? ' <span class="muted">' + esc(j.why) + '</span>' : ''}</td>` +
    `<td>${fmtBytes(j.sent)} / ${fmtBytes(j.total)}</td><td>${fmtMs(j.transfer_ms)}</td><td>${fmtMs(j.total_ms)}</td>` +
    `<td>${j.chunks_resent != null ? esc(j.chunks_resent) : '-'}</td></tr>`).join('') ||
    '<tr><td colspan="8" class="muted">no OTA job seen</td></tr>';
}
const fnName = (f) => ({ s: 'system', u: 'user', b: 'bootloader', r: 'radio stack', c: 'monolithic', n: 'none' }[f] || f);

async function loadPlan() {
  const id = st.selected;
  if (!id) return;
  const d = st.devices.get(id);
  const to = $('#plan-to').value;
  const q = '?product=' + (d && d.product_id ? 1 : 0) + (to ? '&to=' + encodeURIComponent(to) : '');
  const r = await api('/v1/devices/' + id + '/plan' + q).catch(() => null);
  if (!r || id !== st.selected) return;
  const p = r.body || {};
  const box = $('#detail-plan');
  if (r.status !== 200) { box.innerHTML = `<p class="bad">${esc(p.reason || p.error || 'no plan')}</p>`; return; }
  if (!p.steps || !p.steps.length) { box.innerHTML = `<p class="ok">Nothing to do: ${esc(p.from)} meets the goal.</p>`; return; }
  let n = 0;
  box.innerHTML = `<p>${esc(p.from)} &rarr; ${esc(p.to)}: ${fmtBytes(p.payload_bytes)} of modules, ${fmtBytes(p.wire_bytes)} on the wire; ` +
    Object.entries(p.seconds || {}).map(([k, v]) => `${esc(k)} ${esc(v)} s`).join(', ') + '</p><ol>' +
    p.steps.map((s) => s.modules.map((m) => `<li>step ${++n}: ${esc(s.release)} ${esc(m.file)} (${esc(m.function)}/${esc(m.index)} v${esc(m.version)}, ${fmtBytes(m.bytes)})</li>`).join('')).join('') + '</ol>';
}
$('#plan-to').addEventListener('change', loadPlan);

// ---- event log ----
function evVisible(ev) {
  const f = $('#ev-filter').value.trim(), dv = $('#ev-device').value.trim().toLowerCase();
  return (!f || (ev.name || '').startsWith(f)) && (!dv || (ev.coreid || '').includes(dv));
}
let evSeq = 0, evShownSeq = 0;
function renderEvents(full) {
  if ($('#ev-pause').checked && !full) return;
  st.eventsDirty = false;
  const tb = $('#events tbody');
  if (full) { tb.textContent = ''; evShownSeq = 0; }
  const frag = document.createDocumentFragment();
  for (const ev of st.events) {
    if (ev.seq <= evShownSeq || !evVisible(ev)) continue;
    const tr = document.createElement('tr');
    tr.dataset.name = ev.name;
    tr.innerHTML = `<td>${esc(new Date(ev.t).toLocaleTimeString())}</td><td class="mono">${esc(ev.coreid || '')}</td>` +
      `<td class="ev-name">${esc(ev.name)}</td><td class="ev-data" title="${esc(ev.data)}">${esc(ev.data)}</td>`;
    frag.insertBefore(tr, frag.firstChild);
  }
  evShownSeq = evSeq;
  tb.insertBefore(frag, tb.firstChild);
  while (tb.rows.length > 300) tb.deleteRow(tb.rows.length - 1);
  $('#ev-count').textContent = st.events.length + ' events';
}
['#ev-filter', '#ev-device'].forEach((s) => $(s).addEventListener('input', () => renderEvents(true)));
$('#ev-pause').addEventListener('change', () => renderEvents(true));

// ---- fleet view ----
const COLORS = ['#2563eb', '#16a34a', '#d97706', '#9333ea', '#dc2626', '#0891b2', '#4b5563', '#db2777', '#65a30d', '#7c3aed'];
const relColor = new Map();
const colorOf = (r) => { if (!relColor.has(r)) relColor.set(r, COLORS[relColor.size % COLORS.length]); return relColor.get(r); };
let fleetDrawn = 0;

function counts() {
  const rel = {}, stat = { online: 0, offline: 0, 'safe mode': 0, updating: 0 };
  let used = 0, est = 0, usedEst = 0, nEst = 0;
  const queue = [];
  st.devices.forEach((d) => {
    const r = d.release || '?';
    rel[r] = (rel[r] || 0) + 1;
    stat[d.connected ? 'online' : 'offline']++;
    if (d.safe) stat['safe mode']++;
    const active = Array.from(d.jobs.values()).filter((j) => !j.ended);
    if (active.length) stat.updating++;
    if (d.safe || active.length) queue.push({ d, active });
    used += d.used || 0;
    if (d.estimate) { est += d.estimate; usedEst += d.used || 0; nEst++; }
  });
  return { rel, stat, used, est, usedEst, nEst, queue };
}

function bars(el, obj) {
  const max = Math.max(1, ...Object.values(obj));
  el.innerHTML = Object.entries(obj).sort().map(([k, v]) =>
    `<li data-key="${esc(k)}"><span>${esc(k)}</span><b style="width:${Math.round(100 * v / max)}%;background:${colorOf(k)}"></b><span>${v}</span></li>`).join('');
}

function renderFleet() {
  if (now() - fleetDrawn < 250) { // at most 4 Hz
    if (!st.fleetTimer) st.fleetTimer = setTimeout(() => { st.fleetTimer = 0; schedule(); }, 260);
    return;
  }
  fleetDrawn = now();
  st.fleetDirty = false;
  const c = counts();
  bars($('#by-release'), c.rel);
  const last = st.history[st.history.length - 1];
  if (last && JSON.stringify(last.counts) !== JSON.stringify(c.rel)) sample();
  const sEl = $('#by-status');
  const max = Math.max(1, ...Object.values(c.stat));
  sEl.innerHTML = Object.entries(c.stat).map(([k, v]) =>
    `<li><span>${esc(k)}</span><b style="width:${Math.round(100 * v / max)}%"></b><span>${v}</span></li>`).join('');
  $('#healer-queue').innerHTML = c.queue.slice(0, 12).map(({ d, active }) => {
    const j = active[0];
    return `<li class="mono">${esc(d.id.slice(0, 12))}&hellip; ${d.safe ? 'safe mode' : ''} ${j ? esc(modKey(j.module)) + ' ' + esc((j.state || '').toLowerCase()) : 'waiting'}${active.length > 1 ? ' (+' + (active.length - 1) + ' queued)' : ''}</li>`;
  }).join('') + (c.queue.length > 12 ? `<li>&hellip; ${c.queue.length - 12} more</li>` : '') || '<li class="muted">empty</li>';
  $('#data-totals').innerHTML = `<dt>used</dt><dd>${fmtBytes(c.used)}</dd><dt>planned</dt><dd>${fmtBytes(c.est)}</dd>` +
    `<dt>ratio</dt><dd>${c.est ? Math.round(100 * c.usedEst / c.est) + ' %' + (c.nEst < st.devices.size ? ` <span class="muted">(${c.nEst} with an estimate)</span>` : '') : '-'}</dd>`;
  $('#summary').textContent = `${st.devices.size} devices, ${c.stat.online} online, ${c.stat.updating} updating`;
  const seen = new Set(Object.keys(c.rel));
  st.history.forEach((h) => Object.keys(h.counts).forEach((k) => seen.add(k)));
  $('#chart-legend').innerHTML = Array.from(seen).sort().map((r) => `<span><i style="background:${colorOf(r)}"></i>${esc(r)}</span>`).join('');
}

function sample() { // every second and on a change: releases over time
  addThroughput(0);
  const c = {};
  st.devices.forEach((d) => { const r = d.release || '?'; c[r] = (c[r] || 0) + 1; });
  st.history.push({ t: now(), counts: c });
  if (st.history.length > 1800) st.history.shift();
  drawChart();
  drawSpark();
}

function drawChart() {
  const cv = $('#chart'), g = cv.getContext('2d');
  if (!st.chartW) st.chartW = cv.clientWidth || 900; // read once: no forced layout per draw
  if (cv.width !== st.chartW) cv.width = st.chartW;
  const w = cv.width, h = cv.height;
  g.clearRect(0, 0, w, h);
  const H = st.history.slice();
  if (!H.length) return;
  H.push({ t: Math.max(now(), H[H.length - 1].t + 1), counts: H[H.length - 1].counts }); // up to now
  const rels = Array.from(new Set(H.flatMap((s) => Object.keys(s.counts)))).sort();
  const total = Math.max(1, ...H.map((s) => Object.values(s.counts).reduce((a, b) => a + b, 0)));
  const t0 = H[0].t, span = Math.max(1, H[H.length - 1].t - t0);
  const x = (i) => 30 + (w - 40) * (H[i].t - t0) / span, y = (v) => h - 16 - (h - 24) * v / total;
  const base = new Array(H.length).fill(0);
  for (const r of rels) {
    g.beginPath();
    H.forEach((s, i) => g.lineTo(x(i), y(base[i] + (s.counts[r] || 0))));
    for (let i = H.length - 1; i >= 0; i--) g.lineTo(x(i), y(base[i]));
    g.closePath();
    g.fillStyle = colorOf(r);
    g.globalAlpha = 0.75; g.fill(); g.globalAlpha = 1;
    H.forEach((s, i) => { base[i] += s.counts[r] || 0; });
  }
  g.fillStyle = '#6b7380'; g.font = '11px sans-serif';
  g.fillText(String(total), 2, 12); g.fillText('0', 2, h - 16);
  g.fillText(`${Math.round(span / 1000)} s`, w - 40, h - 2);
}

function drawSpark() {
  const cv = $('#spark'), g = cv.getContext('2d'), w = cv.width, h = cv.height;
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...st.thr);
  g.beginPath();
  st.thr.forEach((v, i) => g.lineTo(w * i / (st.thr.length - 1), h - 2 - (h - 4) * v / max));
  g.strokeStyle = '#2563eb'; g.lineWidth = 1.5; g.stroke();
  $('#spark-label').textContent = `throughput ${fmtBytes(st.thr[st.thr.length - 2] || 0)}/s (peak ${fmtBytes(max)}/s)`;
}

// ---- start ----
// The list carries every device's release, connection, safe mode and running
// job in brief (docs/PROTOCOL.md): enough for the fleet view of 1,000 devices
// without one request each. A job the list stops reporting has ended; a drawn
// row's REST view tells how.
async function loadList() {
  const r = await api('/v1/devices');
  if (r.status !== 200 || !Array.isArray(r.body)) return false;
  let busy = false;
  for (const row of r.body) {
    const d = dev(row.id);
    const before = d.release + '|' + d.safe + '|' + d.connected + '|' + JSON.stringify(row.ota || null);
    d.name = row.name || row.id;
    d.product_id = productOf(row);
    d.connected = !!row.connected;
    if (row.system_firmware_version) d.release = row.system_firmware_version;
    if (row.safe_mode != null) d.safe = !!row.safe_mode;
    const cur = row.ota && row.ota.job != null ? row.ota.job : null;
    d.jobs.forEach((j) => { // not running any more: the REST view tells how it ended
      if (!j.ended && j.job !== cur && j.job < (cur == null ? Infinity : cur)) { j.ended = now(); j.state = 'ENDED'; wantFetch(d.id); }
    });
    if (row.ota) mergeJob(d, row.ota, true, !d.detail && !d.listed);
    d.listed = true;
    busy = busy || !!row.ota || d.safe || (d.connected && !d.release);
    if (!d.detail) wantFetch(row.id);
    if (before !== d.release + '|' + d.safe + '|' + d.connected + '|' + JSON.stringify(row.ota || null)) markDirty(d);
  }
  return busy;
}

async function listLoop() { // every second while devices update, else every 5 s
  let busy = true;
  try { busy = await loadList(); } catch (e) { /* next round */ }
  setTimeout(listLoop, busy ? 1000 : 5000);
}

let rr = 0;
function poll() { // once a second; the event stream says when to look sooner
  const t = now(), ids = st.order;
  st.devices.forEach((d) => {
    const active = Array.from(d.jobs.values()).some((j) => !j.ended);
    // a drawn row with a job running, in safe mode or no release yet: every second
    if (hot(d) && (active || (d.safe && d.connected) || (d.connected && !d.release)) && t - d.lastFetch > 900) wantFetch(d.id);
  });
  // the rest: round robin, at most 20 a second, each at most every 10 s
  for (let n = 0; n < Math.min(20, ids.length); n++) {
    const d = st.devices.get(ids[rr++ % ids.length]);
    if (d && t - d.lastFetch > 10000) wantFetch(d.id);
  }
  if (st.selected) schedule();
}

let started = false;
async function start() {
  try {
    const rr = await api('/v1/releases');
    st.releases = Array.isArray(rr.body) ? rr.body : [];
    st.bySysver = new Map(st.releases.map((r) => [r.system_version, r]));
    $('#plan-to').innerHTML = '<option value="">heal (meet the app\'s dependencies)</option>' +
      st.releases.slice().reverse().map((r) => `<option>${esc(r.name)}</option>`).join('');
    await loadList();
  } catch (e) { return; }
  openStream();
  if (!started) {
    started = true;
    setTimeout(listLoop, 1000);
    setInterval(poll, 1000);
    setInterval(sample, 1000);
    sample();
  }
}

start();
