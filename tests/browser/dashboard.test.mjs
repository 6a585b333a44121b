// dashboard.test.mjs - the admin dashboard in headless Chromium (Debian's
// /usr/bin/chromium driven by playwright-core), against a live server under
// load. Run by tests/integration/test_dashboard_browser.sh, which starts the
// server (with an admin token) and the load, and passes:
//   ADMIN  http://127.0.0.1:PORT of the admin listener
//   TOKEN  the admin token
//   OUT    folder for dashboard.png (the build folder)
// Prints "ok - ..." / "FAIL - ..." lines and "N passed, N failed".
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ADMIN = process.env.ADMIN;
const TOKEN = process.env.TOKEN;
const OUT = process.env.OUT || process.cwd();
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
if (!ADMIN || !TOKEN) {
  console.error('ADMIN and TOKEN must be set');
  process.exit(2);
}

let passed = 0;
let failed = 0;
function check(name, cond, detail) {
  if (cond) {
    passed++;
    console.log('ok   - ' + name);
  } else {
    failed++;
    console.log('FAIL - ' + name + (detail !== undefined ? ': ' + JSON.stringify(detail) : ''));
  }
}

// these flags are required on this machine (no GPU, no network but loopback)
const profile = mkdtempSync(join(tmpdir(), 'bufcache-chromium.'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1440, height: 1000 },
  colorScheme: 'light',
});

const state = (page, expr) => page.evaluate(expr);
const dash = (page) => state(page, () => {
  const d = window.bufcacheDashboard;
  const last = d.samples[d.samples.length - 1];
  return {
    status: d.status, message: d.message, received: d.received, samples: d.samples.length,
    span: d.samples.length ? last.t - d.samples[0].t : 0, numGC: last ? last.gc.num : null,
    points: Object.fromEntries(Object.entries(d.charts).map(([k, v]) => [k, v.points])),
    lastAction: d.lastAction,
  };
});

try {
  const page = context.pages()[0] || await context.newPage();
  const foreign = [];
  const pageErrors = [];
  page.on('request', (r) => { if (!r.url().startsWith(ADMIN) && !r.url().startsWith('data:')) foreign.push(r.url()); });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => {
    // the 401s this test provokes on purpose are logged as failed loads
    if (m.type() === 'error' && !/status of 401/.test(m.text())) pageErrors.push(m.text());
  });

  // 1. a wrong token: the page loads (status 401) and says so clearly
  const resp = await page.goto(ADMIN + '/debug/dashboard?token=not-the-token');
  check('the page with a wrong token answers 401', resp.status() === 401, resp.status());
  check('... and is still the page (text/html)', /text\/html/.test(resp.headers()['content-type'] || ''));
  await page.waitForFunction(() => window.bufcacheDashboard && window.bufcacheDashboard.status === 'unauthorized',
    null, { timeout: 10000 });
  const authVisible = await page.isVisible('#auth');
  const authText = await page.textContent('#auth-error');
  check('a wrong token shows the token form', authVisible);
  check('... with a clear error', /refused/.test(authText) && /401/.test(authText), authText);
  check('the token left the address bar', !new URL(page.url()).searchParams.has('token'), page.url());

  // 2. the right token typed into the page: samples flow
  await page.fill('#token-input', TOKEN);
  await page.click('#auth-form button[type=submit]');
  await page.waitForFunction(() => {
    const d = window.bufcacheDashboard;
    return d.status === 'live' && d.samples.length >= 10 &&
      d.samples[d.samples.length - 1].t - d.samples[0].t >= 9000;
  }, null, { timeout: 40000, polling: 250 });
  let d = await dash(page);
  check('ten samples arrived, about a second apart', d.samples >= 10 && d.span >= 9000 && d.span < 20000, d);
  check('the token form is gone', !(await page.isVisible('#auth')));
  const stored = await state(page, () => sessionStorage.getItem('bufcache.adminToken'));
  check('the token is kept in session storage', stored === TOKEN);

  // 3. the charts hold data points (page state and the DOM agree)
  for (const id of ['heap', 'objects', 'gccpu', 'entries', 'rps', 'inflight']) {
    check(`chart ${id} has a point per sample`, d.points[id] >= 10, d.points[id]);
    const dom = await page.getAttribute('#chart-' + id, 'data-points');
    check(`... and says so in the DOM (${dom})`, Number(dom) === d.points[id], dom);
  }
  check('the latency chart has points (the server is under load)', d.points.latency > 0, d.points.latency);
  check('the hit-ratio chart has points', d.points.hitratio > 0, d.points.hitratio);
  check('the size-class heat map has columns', d.points.alloc > 0, d.points.alloc);
  const inked = await state(page, () => {
    const c = document.querySelector('#chart-heap canvas');
    const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < px.length; i += 4) if (px[i]) n++;
    return n / (px.length / 4);
  });
  check('the heap chart is drawn (ink on the canvas)', inked > 0.02, inked);
  const stats = await page.textContent('#stats');
  check('the numbers strip shows the heap', /heap in use/.test(stats) && /(B|KiB|MiB|GiB)/.test(stats), stats);

  // 4. "Run GC" posts to /debug/gc and NumGC rises
  const before = d.numGC;
  await page.click('#btn-gc');
  await page.waitForFunction((n) => {
    const d = window.bufcacheDashboard;
    const last = d.samples[d.samples.length - 1];
    return d.lastAction && d.lastAction.path === '/debug/gc' && last.gc.num > n;
  }, before, { timeout: 15000, polling: 200 });
  d = await dash(page);
  check('Run GC: POST /debug/gc answered a higher NumGC', d.lastAction.result.NumGC > before, d.lastAction);
  check('Run GC: the next samples show NumGC rising', d.numGC > before, { before, after: d.numGC });
  const toast = await page.textContent('#toast');
  check('Run GC: the page says what the cycle did', /GC #\d+ done/.test(toast), toast);
  const numgcStat = await page.textContent('#stat-numgc .v');
  check('the GC cycles number follows', Number(numgcStat) >= d.lastAction.result.NumGC, numgcStat);
  await page.waitForFunction(() => window.bufcacheDashboard.charts.pauses.points > 0, null, { timeout: 5000 })
    .catch(() => {});
  d = await dash(page);
  check('the pause chart shows the cycle', d.points.pauses > 0 && d.points.pausehist > 0, d.points);

  // 5. "Free OS memory" works the same way
  await page.click('#btn-freeos');
  await page.waitForFunction(() => window.bufcacheDashboard.lastAction.path === '/debug/freeosmemory',
    null, { timeout: 15000 });
  d = await dash(page);
  check('Free OS memory: POST /debug/freeosmemory answered', typeof d.lastAction.result.ReleasedNow === 'number',
    d.lastAction);

  // 6. the screenshot, after a few more samples
  await page.waitForTimeout(2500);
  await page.mouse.move(5, 5);
  await state(page, () => { document.getElementById('toast').hidden = true; }); /* asserted above */
  const shot = join(OUT, 'dashboard.png');
  await page.screenshot({ path: shot, fullPage: true });
  console.log('# screenshot: ' + shot);

  // 7. a reload keeps the session's token: no form, samples again
  await page.goto(ADMIN + '/debug/dashboard');
  await page.waitForFunction(() => window.bufcacheDashboard.status === 'live' &&
    window.bufcacheDashboard.samples.length >= 10, null, { timeout: 15000 });
  check('a reload in the same tab needs no token again (history replayed)', !(await page.isVisible('#auth')));

  // 8. "Forget token" asks for it again
  await page.click('#btn-forget');
  await page.waitForFunction(() => window.bufcacheDashboard.status === 'unauthorized', null, { timeout: 10000 });
  const why = await page.textContent('#auth-error');
  check('Forget token: the page asks for the token', /needs its token/.test(why), why);

  check('the page asked nothing of any other origin (no CDN)', foreign.length === 0, foreign);
  check('no script errors', pageErrors.length === 0, pageErrors);
} catch (e) {
  check('the browser test ran to the end', false, String(e && e.stack || e));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
