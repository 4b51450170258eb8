#!/usr/bin/env node
// Manual check (not in the test suite): the dashboard in headless Chromium while
// a fleet of N product Electrons heals from 0.6.1 to 0.6.2 (tests/bench/fleet.sh's heal).
// usage: fleet_measure.js BUILD_DIR [--devices N] [--shot FILE] [--rate N] [--hs N]
//   N devices (default 1000) on 0.6.1 with an app needing 0.6.2, product 4242,
//   one otalab-device process, one otalab-server on loopback. Prints the
//   page's longest main-thread task (PerformanceObserver 'longtask'), frame
//   times (requestAnimationFrame deltas), events and REST calls it handled, and
//   the time from the last spark/flash/status success event (as the page
//   received it) to the page showing all N devices on 0.6.2. --shot FILE saves
//   a 1400x1000 screenshot mid-heal: the last moment with the most rows in view
//   with a bar in flight while 0.6.1 holds 10 % and 0.6.2 has begun; the
//   device table is filtered to the last 16 ids (the first ids heal first).
//   OTALAB_FM_DEVICE_ARGS: more otalab-device options (e.g. "--link lte": bars
//   that move slowly enough for a screenshot). DEBUG=1 prints what the page
//   shows every 0.25 s. CHROMIUM=/usr/bin/chromium, KEEP=1 keeps the temp dir, OTALAB_BENCH_CACHE
//   (default BUILD_DIR/bench-keys, shared with tests/bench) caches device keys.
// Exit 0 when the page showed all N devices on 0.6.2, 1 otherwise.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, execFileSync } = require('child_process');

const argv = process.argv.slice(2);
const opt = (name, def) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : def; };
const B = argv[0] && !argv[0].startsWith('--') ? path.resolve(argv[0]) : null;
if (!B) { console.error('usage: fleet_measure.js BUILD_DIR [--devices N] [--shot FILE] [--rate N] [--hs N]'); process.exit(2); }
const N = +opt('--devices', 1000);
const SHOT = opt('--shot', null);
const RATE = opt('--rate', '100');
const HS = opt('--hs', '24');
const OTALAB = path.join(B, 'cli/otalab'), SERVER = path.join(B, 'server/otalab-server');
const DEVICE = path.join(B, 'device-sim/otalab-device'), FIX = path.join(B, 'fixtures/bin');
const CACHE = process.env.OTALAB_BENCH_CACHE || path.join(B, 'bench-keys');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TOKEN = 'fleet0measure0token';
const PRODUCT = 4242;
const ID_BASE = 'f1ee00000000000000000000';
const { chromium } = require('playwright-core');

const tmpRoot = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(); // the server fsyncs its job files
const T = fs.mkdtempSync(path.join(tmpRoot, 'otalab-fm-'));
const procs = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (m) => console.log(m);
function run(name, bin, args) {
  const p = spawn(bin, args, { stdio: ['ignore', fs.openSync(path.join(T, name + '.out'), 'w'),
    fs.openSync(path.join(T, name + '.log'), 'w')] });
  procs.push(p);
  return p;
}
async function waitFor(what, secs, fn) {
  const end = Date.now() + secs * 1000;
  for (;;) {
    const v = await Promise.resolve().then(fn).catch(() => null);
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out: ' + what);
    await sleep(200);
  }
}

// Runs in the page before app.js: what the main thread and the event stream do.
function instrument(token) {
  sessionStorage.setItem('otalab.token', token);
  const m = window.__m = { longtasks: [], frames: [], events: 0, byName: {}, fetches: 0,
    lastSuccess: 0, lastHealerDone: 0, allAt: 0, n: 0, t0: 0 };
  try {
    new PerformanceObserver((l) => l.getEntries().forEach((e) =>
      m.longtasks.push({ at: e.startTime, ms: e.duration }))).observe({ type: 'longtask', buffered: true });
  } catch (e) { m.noLongtask = String(e); }
  let last = 0;
  const tick = (t) => { if (m.t0 && last) m.frames.push(t - last); last = t; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  const WS = window.WebSocket;
  window.WebSocket = class extends WS {
    constructor(...a) {
      super(...a);
      this.addEventListener('message', (ev) => {
        m.events++;
        try {
          const e = JSON.parse(ev.data);
          m.byName[e.name] = (m.byName[e.name] || 0) + 1;
          if (e.name === 'spark/flash/status' && /^success/.test(e.data)) m.lastSuccess = Date.now();
          if (e.name === 'otalab/healer/done') m.lastHealerDone = Date.now();
        } catch (x) { /* counted */ }
      });
    }
  };
  const f = window.fetch;
  window.fetch = (...a) => { m.fetches++; return f(...a); };
  document.addEventListener('DOMContentLoaded', () => {
    new MutationObserver(() => {
      if (m.allAt || !m.n) return;
      const lis = document.querySelectorAll('#by-release li');
      if (lis.length === 1 && lis[0].dataset.key === '0.6.2' && lis[0].lastElementChild.textContent === String(m.n)) m.allAt = Date.now();
    }).observe(document.querySelector('#by-release'), { childList: true, subtree: true });
  });
}

async function main() {
  if (!fs.existsSync(path.join(FIX, 'system-part1-0.6.2-electron.bin'))) throw new Error('no fixtures in ' + FIX);
  execFileSync(OTALAB, ['keys', 'server', '--out', path.join(T, 'keys')], { stdio: 'ignore' });
  execFileSync(OTALAB, ['mkapp', '--requires', '0.6.2', '--out', path.join(T, 'app.bin')], { stdio: 'ignore' });
  fs.mkdirSync(path.join(T, 'state'));
  fs.mkdirSync(CACHE, { recursive: true });
  for (const f of fs.readdirSync(CACHE)) if (f.endsWith('.pem')) fs.copyFileSync(path.join(CACHE, f), path.join(T, 'state', f));

  run('server', SERVER, ['--coap-port', '0', '--http-port', '0', '--keys', path.join(T, 'keys'),
    '--data', path.join(T, 'data'), '--token', TOKEN, '--product', PRODUCT + ':fleet', '--fixtures', FIX]);
  const listen = await waitFor('server listening', 15, () => {
    const m = /^listening coap=(\d+) http=(\d+)/m.exec(fs.readFileSync(path.join(T, 'server.out'), 'utf8'));
    return m && { coap: m[1], http: m[2] };
  });
  const base = `http://127.0.0.1:${listen.http}`;
  const auth = { Authorization: 'Bearer ' + TOKEN };
  const fd = new FormData();
  fd.append('binary', new Blob([fs.readFileSync(path.join(T, 'app.bin'))]), 'app.bin');
  fd.append('version', '2');
  let r = await fetch(`${base}/v1/products/${PRODUCT}/firmware`, { method: 'POST', headers: auth, body: fd });
  if (!r.ok) throw new Error('POST firmware: ' + r.status);
  r = await fetch(`${base}/v1/products/${PRODUCT}/firmware/release`, { method: 'PUT',
    headers: Object.assign({ 'Content-Type': 'application/json' }, auth), body: JSON.stringify({ version: 2 }) });
  if (!r.ok) throw new Error('PUT firmware/release: ' + r.status);

  const udd = fs.mkdtempSync(path.join(os.tmpdir(), 'otalab-chromium-'));
  const ctx = await chromium.launchPersistentContext(udd, {
    executablePath: CHROMIUM, headless: true, viewport: { width: 1400, height: 1000 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  let rc = 1;
  try {
    const page = ctx.pages()[0] || await ctx.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.addInitScript(instrument, TOKEN);
    await page.goto(base + '/');
    await page.waitForSelector('#conn.on', { timeout: 10000 });
    await page.evaluate((n) => { window.__m.n = n; window.__m.t0 = performance.now(); }, N);

    const t0 = Date.now();
    const fleet = run('fleet', DEVICE, ['--count', String(N), '--mix', '0.6.1:1', '--id-base', ID_BASE,
      '--product', String(PRODUCT),
      '--server', '127.0.0.1:' + listen.coap, '--server-cert', path.join(T, 'keys', 'server.crt.pem'),
      '--api', base, '--token', TOKEN, '--state-dir', path.join(T, 'state'), '--fixtures', FIX,
      '--connect-rate', RATE, '--max-handshakes', HS, '--until', '0.6.2', '--duration', '600', '-q',
      ...(process.env.OTALAB_FM_DEVICE_ARGS || '').split(' ').filter(Boolean)]);
    const fleetExit = new Promise((res) => fleet.once('exit', (code) => res({ code, at: Date.now() })));
    // the screenshot's table: the last 16 ids (the fleet's first devices heal first)
    const lastPrefix = (BigInt('0x' + ID_BASE) + BigInt(N - 1)).toString(16).padStart(24, '0').slice(0, 23);
    if (SHOT) await page.fill('#dev-filter', lastPrefix);
    let shot = null, maxMid = 0, bestMid = 0;
    const doneOrShot = (async () => {
      for (;;) {
        const s = await page.evaluate(() => {
          const rel = {};
          document.querySelectorAll('#by-release li').forEach((li) => { rel[li.dataset.key] = +li.lastElementChild.textContent; });
          const rows = Array.from(document.querySelectorAll('#devices tbody tr')).filter((tr) => tr.getBoundingClientRect().bottom < innerHeight);
          const mid = rows.filter((tr) => Array.from(tr.querySelectorAll('.progress')).some((p) => +p.dataset.pct > 5 && +p.dataset.pct < 95)).length;
          return { rel, mid, allAt: window.__m.allAt };
        });
        maxMid = Math.max(maxMid, s.mid);
        if (process.env.DEBUG) log(JSON.stringify(s));
        // the last moment with the most bars in flight in view while 0.6.1 holds
        // 10 % and 0.6.2 has begun
        if (SHOT && s.mid >= Math.max(2, bestMid) && (s.rel['0.6.2'] || 0) > 0 && (s.rel['0.6.1'] || 0) >= N / 10) {
          await page.screenshot({ path: SHOT });
          bestMid = s.mid;
          shot = `${s.mid} rows with a bar in flight in view, releases ${JSON.stringify(s.rel)}`;
        }
        if (s.allAt) return;
        await sleep(250);
      }
    })();
    const fe = await fleetExit;
    log(`fleet: exit ${fe.code} after ${((fe.at - t0) / 1000).toFixed(1)} s: ` +
      (fs.readFileSync(path.join(T, 'fleet.out'), 'utf8').match(/^fleet: .*$/m) || ['no summary'])[0]);
    await Promise.race([doneOrShot, sleep(60000)]);
    const m = await page.evaluate(() => window.__m);
    const fr = m.frames.slice().sort((a, b) => a - b);
    const q = (p) => fr.length ? fr[Math.min(fr.length - 1, Math.floor(p * fr.length))].toFixed(1) : '-';
    const lt = m.longtasks.map((x) => x.ms);
    const sec = (a, b) => a && b ? ((a - b) / 1000).toFixed(2) + ' s' : 'never';
    const heal = (fe.at - t0) / 1000;
    log(`page: ${m.events} events (${(m.events / heal).toFixed(0)}/s over the heal), ${m.fetches} REST calls ` +
      `(${(m.fetches / heal).toFixed(0)}/s); by name ${JSON.stringify(m.byName)}`);
    log(`long tasks (> 50 ms): ${lt.length}, longest ${lt.length ? Math.max(...lt).toFixed(0) : 0} ms, ` +
      `total ${lt.reduce((a, b) => a + b, 0).toFixed(0)} ms${m.noLongtask ? ' (observer: ' + m.noLongtask + ')' : ''}`);
    log(`frames: ${fr.length}, median ${q(0.5)} ms, p95 ${q(0.95)} ms, p99 ${q(0.99)} ms, max ${q(1)} ms, ` +
      `> 50 ms: ${fr.filter((x) => x > 50).length}, > 100 ms: ${fr.filter((x) => x > 100).length}`);
    log(`all ${N} on 0.6.2 in the page: ${sec(m.allAt, m.lastSuccess)} after the last spark/flash/status success, ` +
      `${sec(m.allAt, m.lastHealerDone)} after the last otalab/healer/done, ${sec(m.allAt, fe.at)} after the fleet's --until exit`);
    if (SHOT) log('screenshot: ' + (shot ? `${SHOT} (${shot}, ${fs.statSync(SHOT).size} B)` : `not taken (at most ${maxMid} bars in flight in view)`));
    if (errors.length) log('page errors: ' + errors.join('; '));
    rc = m.allAt && !errors.length ? 0 : 1;
  } finally {
    await ctx.close();
    fs.rmSync(udd, { recursive: true, force: true });
  }
  return rc;
}

async function cleanup() {
  for (const p of procs) { try { p.kill('SIGTERM'); } catch (e) { /* gone */ } }
  await Promise.all(procs.map((p) => p.exitCode !== null || p.signalCode !== null ? null :
    new Promise((r) => { p.once('exit', r); setTimeout(r, 5000); })));
  const st = path.join(T, 'state');
  if (fs.existsSync(st)) {
    for (const f of fs.readdirSync(st)) {
      if (f.endsWith('.pem') && !fs.existsSync(path.join(CACHE, f))) fs.copyFileSync(path.join(st, f), path.join(CACHE, f));
    }
  }
  if (process.env.KEEP) log('kept ' + T); else fs.rmSync(T, { recursive: true, force: true, maxRetries: 5 });
}

main().then(async (rc) => { await cleanup(); process.exit(rc); }, async (e) => {
  log('FAIL: ' + (e.stack || e));
  for (const f of ['server.log', 'fleet.log']) {
    const p = path.join(T, f);
    if (fs.existsSync(p)) log(`--- ${f} (tail)\n` + fs.readFileSync(p, 'utf8').split('\n').slice(-15).join('\n'));
  }
  await cleanup();
  process.exit(1);
});
