#!/usr/bin/env node
// End-to-end: the dashboard in headless Chromium (Debian's chromium driven by
// playwright-core) watching a product device heal from 0.6.1 to 0.6.2.
// usage: dashboard.test.js OTALAB OTALAB_SERVER OTALAB_DEVICE FIXTURES_DIR OUT_DIR
// Exit 0 pass, 1 fail, 77 skipped (no chromium or playwright-core).
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, execFileSync } = require('child_process');

const [OTALAB, SERVER, DEVICE, FIX, OUT] = process.argv.slice(2);
if (!OUT) { console.error('usage: dashboard.test.js OTALAB SERVER DEVICE FIXTURES OUT_DIR'); process.exit(2); }
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TOKEN = 'dashboard0test0token';
const A = '0d0000000000000000000001'; // product device: 0.6.1 + app needing 0.6.2
const B = '0d0000000000000000000002'; // developer device, idle on 0.6.2

function skip(why) { console.log('SKIP: ' + why); process.exit(77); }
if (!fs.existsSync(CHROMIUM)) skip(`${CHROMIUM} missing (apt-get install chromium; scripts/test does)`);
let chromium;
try { ({ chromium } = require('playwright-core')); } catch (e) { skip('playwright-core missing (cd tests/browser && npm install)'); }

const T = fs.mkdtempSync(path.join(os.tmpdir(), 'otalab-dash-'));
const procs = [];
let failed = false;
const ok = (m) => console.log('ok: ' + m);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function cleanup() {
  for (const p of procs) { try { p.kill('SIGTERM'); } catch (e) { /* gone */ } }
  await Promise.all(procs.map((p) => p.exitCode !== null || p.signalCode !== null ? null :
    new Promise((r) => { p.once('exit', r); setTimeout(r, 5000); })));
  if (failed) {
    for (const f of ['server.log', 'a.log', 'flash.out'].filter(() => true)) {
      const p = path.join(T, f);
      if (fs.existsSync(p)) console.log(`--- ${f} (tail)\n` + fs.readFileSync(p, 'utf8').split('\n').slice(-40).join('\n'));
    }
  }
  if (process.env.KEEP) console.log('kept ' + T); else fs.rmSync(T, { recursive: true, force: true, maxRetries: 5 });
}
function fail(m) { console.log('FAIL: ' + m); failed = true; throw new Error(m); }
async function waitFor(what, secs, fn) {
  const end = Date.now() + secs * 1000;
  for (;;) {
    let v;
    try { v = await fn(); } catch (e) { v = null; }
    if (v) return v;
    if (Date.now() > end) fail('timed out: ' + what);
    await sleep(200);
  }
}
function run(name, bin, args) {
  const out = fs.openSync(path.join(T, name + '.out'), 'w');
  const log = fs.openSync(path.join(T, name + '.log'), 'w');
  const p = spawn(bin, args, { stdio: ['ignore', out, log] });
  procs.push(p);
  return p;
}

async function main() {
  execFileSync(OTALAB, ['keys', 'server', '--out', path.join(T, 'keys')], { stdio: 'ignore' });
  for (const id of [A, B])
    execFileSync(OTALAB, ['keys', 'device', '--id', id, '--out', path.join(T, 'dev')], { stdio: 'ignore' });
  execFileSync(OTALAB, ['mkapp', '--requires', '0.6.2', '--out', path.join(T, 'app062.bin')], { stdio: 'ignore' });

  const help = execFileSync(SERVER, ['--help'], { encoding: 'utf8' });
  const args = ['--coap-port', '0', '--http-port', '0', '--keys', path.join(T, 'keys'),
    '--data', path.join(T, 'data'), '--token', TOKEN, '--product', '1:fleet', '-v'];
  const healer = help.includes('--fixtures');
  if (healer) args.push('--fixtures', FIX);
  run('server', SERVER, args);
  const listen = await waitFor('server listening', 15, () => {
    const m = /^listening coap=(\d+) http=(\d+)/m.exec(fs.readFileSync(path.join(T, 'server.out'), 'utf8'));
    return m && { coap: m[1], http: m[2] };
  });
  const base = `http://127.0.0.1:${listen.http}`;
  const rest = async (p, opts = {}) => {
    const r = await fetch(base + p, Object.assign({}, opts,
      { headers: Object.assign({ Authorization: 'Bearer ' + TOKEN }, opts.headers || {}) }));
    return { status: r.status, body: await r.json().catch(() => null) };
  };
  ok(`server coap=${listen.coap} http=${listen.http} (healer ${healer ? 'on' : 'not wired: flashing by hand'})`);

  // the page itself: content types and caching
  let r = await fetch(base + '/');
  if (r.status !== 200 || !/text\/html/.test(r.headers.get('content-type')) ||
      r.headers.get('cache-control') !== 'no-cache' || !r.headers.get('etag')) fail('GET / headers');
  const r304 = await fetch(base + '/', { headers: { 'If-None-Match': r.headers.get('etag') } });
  if (r304.status !== 304) fail('If-None-Match: status ' + r304.status);
  r = await fetch(base + '/app.js');
  if (!/javascript/.test(r.headers.get('content-type')) || !/max-age=\d+/.test(r.headers.get('cache-control') || '')) fail('app.js headers');
  if ((await fetch(base + '/v1/releases')).status !== 401) fail('API without a token is not 401');
  ok('/ text/html no-cache + ETag (304 on If-None-Match), app.js max-age, API still needs the token');

  for (const [id, prod] of [[A, 1], [B, 0]]) {
    const pem = fs.readFileSync(path.join(T, 'dev', id + '.pub.pem'), 'utf8');
    const reg = await rest('/v1/devices', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ id, public_key: pem, name: prod ? 'heal-me' : 'idle', product_id: prod }) });
    if (reg.status !== 200) fail(`register ${id}: ${reg.status} ${JSON.stringify(reg.body)}`);
  }
  const devArgs = (id) => ['--id', id, '--key', path.join(T, 'dev', id + '.key.pem'), '--cert', path.join(T, 'dev', id + '.crt.pem'),
    '--server', '127.0.0.1:' + listen.coap, '--server-cert', path.join(T, 'keys', 'server.crt.pem'),
    '--state', path.join(T, id + '.state'), '--fixtures', FIX, '-v'];
  run('b', DEVICE, devArgs(B).concat(['--release', '0.6.2']));

  const udd = fs.mkdtempSync(path.join(os.tmpdir(), 'otalab-chromium-'));
  const ctx = await chromium.launchPersistentContext(udd, {
    executablePath: CHROMIUM, headless: true, viewport: { width: 1400, height: 1000 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = ctx.pages()[0] || await ctx.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(base + '/');
    await page.waitForSelector('#login:not([hidden])', { timeout: 10000 });
    await page.fill('#login-token', TOKEN);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#conn.on', { timeout: 10000 });
    ok('logged in with the token; event stream live');

    // A 3G link (no loss) makes the heal last seconds, as on a cellular device:
    // on bare loopback it ends within a second, before the page's once-a-second
    // fleet poll can show the safe-mode state this test watches.
    run('a', DEVICE, devArgs(A).concat(['--release', '0.6.1', '--app', path.join(T, 'app062.bin'),
      '--link', '3g,loss=0', '--seed', '1']));
    const row = `#devices tr[data-id="${A}"]`;
    await page.waitForSelector(`${row} td.release:text-is("0.6.1")`, { timeout: 30000 });
    await page.waitForSelector(`${row} td.safe .pill.safe`, { timeout: 30000 });
    await page.waitForSelector(`#devices tr[data-id="${B}"] td.release:text-is("0.6.2")`, { timeout: 30000 });
    ok('device A shows 0.6.1, product 1, safe mode; device B 0.6.2');

    if (!healer) { // drive the heal by hand: the three parts of 0.6.2, one per reboot
      const parts = [1, 2, 3].map((p) => path.join(FIX, `system-part${p}-0.6.2-electron.bin`));
      const fl = fs.openSync(path.join(T, 'flash.out'), 'w');
      procs.push(spawn(OTALAB, ['flash', '--server', base, '--token', TOKEN, '--quiet', A, ...parts], { stdio: ['ignore', fl, fl] }));
    }
    // watch the bars move; a screenshot while a module is on its way
    let mid = false, maxPct = 0;
    const shot = path.join(OUT, 'dashboard.png');
    fs.mkdirSync(OUT, { recursive: true });
    await waitFor('device A shows 0.6.2', 240, async () => {
      const pcts = await page.$$eval(`${row} .progress`, (els) => els.map((e) => +e.dataset.pct));
      for (const p of pcts) maxPct = Math.max(maxPct, p);
      if (!mid && pcts.length >= 2 && pcts.some((p) => p > 5 && p < 95)) {
        await page.click(row);
        await page.screenshot({ path: path.join(OUT, 'dashboard-heal.png'), fullPage: true });
        mid = true;
      }
      return (await page.textContent(`${row} td.release`)) === '0.6.2';
    });
    await page.waitForSelector(`${row} .progress.done[data-pct="100"]`, { timeout: 10000 });
    const done = await page.$$eval(`${row} .progress.done`, (els) => els.map((e) => e.dataset.module));
    ok(`device A shows 0.6.2; progress reached 100 % (${done.join(', ')}); mid-heal screenshot ${mid ? 'taken' : 'missed'}`);
    await page.waitForFunction((id) => !document.querySelector(`#devices tr[data-id="${id}"] td.safe .pill.safe`), A, { timeout: 20000 });
    ok('device A out of safe mode');

    // the success event, as the log shows it
    const flashEvents = await page.$$eval('#events tr[data-name="spark/flash/status"] td.ev-data', (els) => els.map((e) => e.textContent));
    if (flashEvents.length || healer) {
      await page.waitForSelector('#events tr[data-name="spark/flash/status"] td.ev-data:text-matches("^success")', { timeout: 20000 });
      ok(`event log shows spark/flash/status success (${flashEvents.length} flash events)`);
    } else {
      const names = await page.$$eval('#events td.ev-name', (els) => Array.from(new Set(els.map((e) => e.textContent))));
      console.log('note: the server published no spark/flash/status event (events seen: ' + names.join(', ') + ')');
    }
    // filters: device and name prefix
    await page.fill('#ev-device', B);
    const other = await page.$$eval('#events tbody tr', (els, b) => els.filter((e) => !e.textContent.includes(b)).length, B);
    if (other) fail('device filter left other devices\' events');
    await page.fill('#ev-device', '');
    ok('event log filter by device');

    // detail view: modules, jobs, plan
    await page.click(row);
    await page.waitForSelector('#detail:not([hidden]) .detail-release:text-is("0.6.2")');
    const mods = await page.$$eval('#detail-modules tbody tr', (els) => els.map((e) => e.textContent));
    if (!mods.some((t) => /^user/.test(t) && /yes$/.test(t))) fail('detail: user module dependencies not met: ' + mods.join(' | '));
    await page.waitForSelector('#detail-jobs tbody tr td:text-matches("ok|DONE")', { timeout: 10000 });
    await page.selectOption('#plan-to', '0.7.0');
    await page.waitForSelector('#detail-plan li', { timeout: 10000 });
    const plan = await page.textContent('#detail-plan');
    const api = await rest(`/v1/devices/${A}/plan?to=0.7.0&product=1`);
    if (api.status !== 200 || !plan.includes(api.body.steps[0].modules[0].file)) fail('detail: plan differs from GET /v1/devices/:id/plan');
    ok(`detail: modules with dependencies met, OTA jobs, plan to 0.7.0 (${api.body.steps.length} step(s), ${api.body.wire_bytes} B)`);

    await page.click('#detail-close');
    await page.screenshot({ path: shot, fullPage: true });
    if (errors.length) fail('page errors: ' + errors.join('; '));
    ok('screenshots: ' + shot + (mid ? ', ' + path.join(OUT, 'dashboard-heal.png') : ''));
  } catch (e) {
    const page = ctx.pages()[0];
    if (page) {
      fs.mkdirSync(OUT, { recursive: true });
      await page.screenshot({ path: path.join(OUT, 'dashboard-failure.png'), fullPage: true }).catch(() => {});
      console.log('--- page: devices\n' + await page.innerText('#devices').catch(() => '?'));
      console.log('--- page: events\n' + (await page.innerText('#events').catch(() => '?')).slice(0, 2000));
    }
    throw e;
  } finally {
    await ctx.close();
    fs.rmSync(udd, { recursive: true, force: true });
  }
}

main().then(async () => { await cleanup(); console.log('PASS browser/dashboard'); process.exit(0); },
  async (e) => {
    failed = true;
    if (!/timed out|FAIL/.test(String(e))) console.log('FAIL: ' + (e.stack || e));
    await cleanup();
    process.exit(1);
  });
