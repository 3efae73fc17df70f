// `gantry audit serve` in headless Chromium against a real Consul, Redis,
// Docker and real registrators: live rows and timeline, orphans, escaping,
// CSP, auth beyond loopback, screenshots (test-artifacts/audit/).
import test from 'ava';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import type { ConsulClient } from '@gantry/core';
import { cleanupContainers } from '../../test/harness/engines/docker.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { spawnEngine, tempDir, freePort, waitUntil, type ManagedProcess } from '../../test/harness/process.ts';
import { repoRoot } from '../../test/harness/bins.ts';
import { launchChromium } from '../../test/harness/chromium.ts';
import { startAuditStack, type AuditStack } from './stack.ts';

const track = manageEngines(test);
const artifacts = join(repoRoot, 'test-artifacts', 'audit');
let st: AuditStack;
let runId: string;
let ownerA: string;
let ownerB: string;
let consul: ConsulClient;
let pageUrl: string;
let browser: Browser;

/** `gantry audit serve` as a real process; resolves once it answers (or exits). */
async function serve(addr: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<ManagedProcess> {
  const dir = tempDir('audit-page');
  const proc = spawnEngine('gantry audit serve', process.execPath, [join(repoRoot, 'cli/bin/gantry.js'), 'audit', 'serve', '--addr', addr, '--refresh', '1s',
    '--audit-redis', st.redis.url, '--audit-key', st.key, '--no-passing-after', '1h', ...extra], { logFile: join(dir, 'serve.log'), env: { ...process.env, CONSUL_HTTP_ADDR: st.consulEngine.addr, ...env } });
  track(`page ${addr}`, { tail: (n) => proc.tail(n), stop: () => proc.stop() });
  return proc;
}

async function openPage(url = `${pageUrl}/`): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.goto(url);
  return page;
}

async function registerMany(n: number, node: string, owner: string): Promise<void> {
  for (let i = 0; i < n; i += 64) {
    const ops = [];
    for (let j = i; j < Math.min(n, i + 64); j++) {
      ops.push({ Service: { Verb: 'set', Node: node, Service: { ID: `bulk-${j}`, Service: `bulk-${j % 50}`, Address: `10.1.${Math.floor(j / 250)}.${j % 250}`, Port: 8000 + (j % 7), Tags: ['bulk'], Meta: { 'gantry-owner': owner, 'gantry-source': 'static', 'gantry-origin': `bulk.yaml#${j}` } } } });
    }
    if (i === 0) await consul.request('PUT', '/v1/catalog/register', { body: { Node: node, Address: '10.1.0.1' } });
    await consul.request('PUT', '/v1/txn', { body: ops });
  }
}

test.before(async () => {
  mkdirSync(artifacts, { recursive: true });
  [st, browser] = await Promise.all([startAuditStack(track), launchChromium()]);
  ({ runId, ownerA, ownerB, consul } = st);
  const port = await freePort();
  const proc = await serve(`127.0.0.1:${port}`);
  pageUrl = `http://127.0.0.1:${port}`;
  await waitUntil('page serves', async () => (await fetch(`${pageUrl}/healthz`)).ok, { proc, timeoutMs: 30_000 });
});

test.after.always(async () => {
  await browser?.close();
  if (st) await cleanupContainers(st.docker, runId);
  consul?.close();
});

test.serial('empty registry: the page renders with a strict CSP and no errors', async (t) => {
  const res = await fetch(`${pageUrl}/`);
  const csp = res.headers.get('content-security-policy') ?? '';
  t.regex(csp, /default-src 'none'/);
  t.regex(csp, /script-src 'self'(;|$)/, 'no inline script, no eval, no CDN');
  t.false(/unsafe-inline|unsafe-eval|https?:/.test(csp));
  const page = await openPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.reload();
  await page.waitForSelector('#drift h2');
  t.regex(await page.textContent('#pager') ?? '', /instances/);
  await page.screenshot({ path: join(artifacts, 'empty-registry.png'), fullPage: true });
  t.deepEqual(errors, []);
  await page.close();
});

test.serial('a container started during the test appears with its Docker host and container name; its stop appears in the timeline', async (t) => {
  const page = await openPage();
  await page.waitForFunction("document.getElementById('live')?.textContent === '(live)'", undefined, { timeout: 15_000 });
  const name = `${runId}-shop`;
  const c = await st.run('a', 'shop', { SERVICE_NAME: `shop-${runId}` });
  // no reload: the live timeline refreshes the table
  const row = await page.waitForSelector(`tr[data-service="shop-${runId}"]`, { timeout: 20_000 });
  const text = (await row.textContent()) ?? '';
  t.regex(text, new RegExp(`container ${name}`), 'the container name');
  const node = (await consul.request<{ Config: { NodeName: string } }>('GET', '/v1/agent/self')).body.Config.NodeName;
  t.regex(text, new RegExp(`docker host ${node}`), 'the Docker host (the agent node it registered on)');
  t.regex(text, /gantry\/busybox:test/, 'the image');
  t.regex(text, new RegExp(`${ownerA} alive`), 'owner and liveness');
  t.truthy(await page.$(`#timeline li:has-text("register"):has-text("shop-${runId}")`));

  await c.stop({ t: 0 });
  await page.waitForSelector(`#timeline li:has-text("deregister"):has-text("shop-${runId}")`, { timeout: 20_000 });
  await page.locator(`tr[data-service="shop-${runId}"]`).waitFor({ state: 'detached', timeout: 20_000 });
  t.pass();

  // per-service history: who registered/deregistered it, when, why
  await page.goto(`${pageUrl}/service/${encodeURIComponent(`shop-${runId}`)}`);
  const history = (await page.textContent('#history')) ?? '';
  t.regex(history, /deregister/);
  t.regex(history, /register/);
  t.regex(history, new RegExp(ownerA));
  await page.close();
});

test.serial('every value is escaped: a tag <img src=x onerror=alert(1)> shows as text and runs nothing', async (t) => {
  const evil = '<img src=x onerror=alert(1)>';
  await consul.request('PUT', '/v1/agent/service/register', { body: { ID: `xss-${runId}`, Name: `xss-${runId}`, Address: '127.0.0.9', Port: 7300, Tags: [evil], Meta: { note: '<script>alert(2)</script>', quote: `"'><svg onload=alert(3)>` } } });
  const page = await openPage();
  const dialogs: string[] = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); void d.dismiss(); });
  const row = await waitUntil('xss row', async () => {
    await page.goto(`${pageUrl}/?q=${encodeURIComponent(`xss-${runId}`)}`);
    const r = page.locator(`tr[data-service="xss-${runId}"]`);
    return (await r.count()) === 1 ? r : undefined;
  }, { timeoutMs: 20_000, intervalMs: 500 });
  t.is(await row.locator('.tag').textContent(), evil, 'the tag is shown as its text');
  t.regex((await row.textContent()) ?? '', /note=<script>alert\(2\)<\/script>/);
  t.regex((await row.textContent()) ?? '', /quote="'><svg onload=alert\(3\)>/);
  t.is(await page.locator('#instances img, #instances script, #instances svg').count(), 0, 'no element was made from a value');
  await page.goto(`${pageUrl}/service/${encodeURIComponent(`xss-${runId}`)}`);
  t.is(await page.locator('main img, main svg').count(), 0);
  t.deepEqual(dialogs, [], 'no script ran');
  await page.close();
});

test.serial('1,000 instances: paged table, search and filter by source, owner and health', async (t) => {
  await registerMany(1000, `static-${runId}`, `bulk-${runId}`);
  const page = await openPage();
  await waitUntil('1000 bulk instances read', async () => {
    await page.goto(`${pageUrl}/?source=static`);
    return /^1000 of /.test((await page.textContent('#pager')) ?? '');
  }, { timeoutMs: 30_000, intervalMs: 1000 });
  t.is(await page.locator('#instances tbody tr').count(), 100, 'one page of 100 rows');
  await page.goto(`${pageUrl}/`);
  await page.screenshot({ path: join(artifacts, 'registry-1000-instances.png') });
  await page.fill('input[name=q]', 'bulk-77');
  await page.click('#filter button');
  await page.waitForURL(/q=bulk-77/);
  t.regex((await page.textContent('#pager')) ?? '', /^11 of /, 'search: bulk-77 and bulk-770…779');
  const texts = await page.locator('#instances tbody tr').allTextContents();
  t.true(texts.length === 11 && texts.every((x) => x.includes('bulk-77')), 'search narrows the rows');
  await page.goto(`${pageUrl}/?owner=${encodeURIComponent(`bulk-${runId}`)}`);
  t.regex((await page.textContent('#pager')) ?? '', /^1000 of /, 'owner filter');
  const owned = await page.locator('#instances tbody tr').allTextContents();
  t.true(owned.every((x) => x.includes(`bulk-${runId}`)));
  await page.goto(`${pageUrl}/?health=critical&source=static`);
  t.regex((await page.textContent('#pager')) ?? '', /^0 of /, 'health filter');
  await page.close();
  await consul.request('PUT', '/v1/catalog/deregister', { body: { Node: `static-${runId}` } });
});

test.serial('a registrator SIGKILLed: after its heartbeat TTL its records are orphans on the page', async (t) => {
  await st.run('a', 'left', { SERVICE_NAME: `left-${runId}` });
  await st.run('b', 'kept', { SERVICE_NAME: `kept-${runId}` });
  const page = await openPage();
  await waitUntil('both rows', async () => {
    await page.goto(`${pageUrl}/`);
    return (await page.$(`tr[data-service="left-${runId}"]`)) && (await page.$(`tr[data-service="kept-${runId}"]`));
  }, { timeoutMs: 30_000, intervalMs: 1000 });
  await st.regA.kill();
  const drift = await waitUntil('orphans on the page', async () => {
    await page.goto(`${pageUrl}/`);
    const d = (await page.textContent('#drift')) ?? '';
    return d.includes('Orphans: owner gone') && d.includes(`left-${runId}`) ? d : undefined;
  }, { timeoutMs: 30_000, intervalMs: 1000 });
  t.regex(drift, new RegExp(`owner ${ownerA} gone`));
  t.false(new RegExp(`Orphans[^]*kept-${runId}[^]*Unowned`).test(drift), 'the other registrator\'s record is no orphan');
  t.regex((await page.textContent(`tr[data-service="left-${runId}"]`)) ?? '', new RegExp(`${ownerA} gone`));
  t.regex((await page.textContent(`tr[data-service="kept-${runId}"]`)) ?? '', new RegExp(`${ownerB} alive`));
  await page.locator('#drift').screenshot({ path: join(artifacts, 'drift-found.png') });
  await page.screenshot({ path: join(artifacts, 'drift-found-page.png'), fullPage: false });
  await page.close();
});

test.serial('beyond loopback a token is required: refused without one; 401 without it; the bearer token or a one-time ?token= opens it', async (t) => {
  const port = await freePort();
  const refused = await serve(`0.0.0.0:${port}`);
  const exit = await refused.exit;
  t.is(exit.code, 2, 'no token, not loopback: refused with exit 2');
  t.regex(refused.tail(5), /refusing to serve the registry page on 0\.0\.0\.0 without --token/);

  const token = `tok-${runId}`;
  const port2 = await freePort();
  const proc = await serve(`0.0.0.0:${port2}`, [], { GANTRY_AUDIT_TOKEN: token }); // not on the command line: ps shows that
  const url = `http://127.0.0.1:${port2}`;
  await waitUntil('page with token up', async () => (await fetch(`${url}/healthz`, { headers: { authorization: `Bearer ${token}` } })).ok, { proc, timeoutMs: 30_000 });
  for (const path of ['/', '/api/drift', '/api/instances', '/events', '/healthz', '/metrics', '/app.js']) {
    t.is((await fetch(`${url}${path}`)).status, 401, `${path} without a token`);
  }
  t.is((await fetch(`${url}/`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
  t.is((await fetch(`${url}/api/drift`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
  t.false(proc.tail(200).includes(token), 'the token is never logged');
  const page = await browser.newPage();
  await page.goto(`${url}/?token=${token}`);
  t.false(page.url().includes(token), 'the token leaves the address bar');
  t.truthy(await page.$('#instances'), 'the page opens with the cookie');
  await page.close();
  await proc.stop();
});
