// What the browser tests share: real hub processes (random ports, stopped
// by PID), Debian's Chromium driven by playwright-core, and small waits.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const consoleDir = resolve(here, '..');
export const hubBin = process.env.EVA_HUB_BIN || resolve(consoleDir, '../target/debug/eva-hub');
export const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
export const resultsDir = process.env.EVA_TEST_RESULTS || join(consoleDir, 'test-results');
mkdirSync(resultsDir, { recursive: true });

/** The flags every test browser runs with. */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** A free TCP port on 127.0.0.1 (for a hub that must know its own origin up front). */
export async function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

let hubs = 0;

/**
 * Starts `eva-hub serve` and resolves once it listens. `args` are added to
 * `serve`; the memory store unless `database` is given. The hub's JSON log
 * goes to test-results/hub-<n>.log.
 */
export async function startHub({ args = [], env = {}, port = 0, database = 'memory', dev = true } = {}) {
  const log = join(resultsDir, `hub-${process.pid}-${++hubs}.log`);
  const argv = [
    'serve',
    ...(dev ? ['--dev'] : []),
    '--listen', `127.0.0.1:${port}`,
    '--metrics-listen', '127.0.0.1:0',
    '--database-url', database,
    ...args,
  ];
  const child = spawn(hubBin, argv, {
    env: { ...process.env, EVA_HUB__LOG__FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = createWriteStream(log);
  child.stderr.pipe(out);
  const listen = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`eva-hub did not start within 15 s (log: ${log})`)), 15_000);
    child.once('exit', (code) => fail(new Error(`eva-hub exited with ${code} before serving (log: ${log})`)));
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      out.write(`${line}\n`);
      if (!line.includes('eva-hub serving')) return;
      try {
        const j = JSON.parse(line);
        const addr = j.listen ?? j.fields?.listen;
        clearTimeout(timer);
        ok(addr);
      } catch {
        // not the JSON line we want
      }
    });
  });
  const url = `http://${listen}`;
  return {
    url,
    port: Number(listen.split(':').pop()),
    pid: child.pid,
    log,
    child,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((ok) => child.once('exit', ok));
      process.kill(child.pid, 'SIGTERM');
      const killer = setTimeout(() => {
        if (child.exitCode === null) process.kill(child.pid, 'SIGKILL');
      }, 8000);
      await exited;
      clearTimeout(killer);
    },
  };
}

/** Runs the hub binary for a one-off command (e.g. `token`) and returns its stdout. */
export function hubCommand(args, env = {}) {
  const r = spawnSync(hubBin, args, { env: { ...process.env, ...env }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`eva-hub ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** A fresh Chromium with a fresh profile; `close()` removes the profile. */
export async function launchBrowser() {
  const profile = mkdtempSync(join(tmpdir(), 'eva-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1440, height: 1000 },
  });
  // The persistent context opens a blank tab; tests open their own.
  for (const p of context.pages()) await p.close();
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * A new tab that records page errors, failed CSP checks and console
 * errors; `page.problems()` lists them.
 */
export async function newPage(context) {
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    const t = m.text();
    // The browser's own line for a refused WebSocket (a hub restarting) is expected.
    const expected = t.includes('favicon') || /status of 404/.test(t) || /^WebSocket connection to .* failed/.test(t);
    if (m.type() === 'error' && !expected) problems.push(`console error: ${t}`);
    if (/Content Security Policy/i.test(t)) problems.push(`CSP: ${t}`);
  });
  page.problems = () => problems;
  return page;
}

/** Signs the console in with `token` (default: the prefilled dev token). */
export async function signIn(page, url, token) {
  await page.goto(`${url}/console/`);
  const field = page.getByLabel('Connection token');
  if (token !== undefined) await field.fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** Polls `fn` until it returns a truthy value; fails with `what` after `timeoutMs`. */
export async function until(fn, what, timeoutMs = 10_000, everyMs = 50) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** POSTs JSON to the hub's REST API (dev: no key). */
export async function rest(url, path, body) {
  const res = await fetch(`${url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json().catch(() => null);
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status} ${JSON.stringify(json)}`);
  return json;
}

export function randomId() {
  return randomBytes(4).toString('hex');
}

export function screenshotPath(name) {
  const dir = process.env.EVA_SCREENSHOTS || resultsDir;
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true });
  return join(dir, name);
}
