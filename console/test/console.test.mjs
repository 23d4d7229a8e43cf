// The operator console and the participant page against a `--dev` hub
// running three demo presentations, driven the way a person uses them.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { launchBrowser, newPage, randomId, rest, screenshotPath, signIn, startHub, until } from './harness.mjs';

const DEMO = ['Product tour: Eva Studio', 'Q3 business review', 'Onboarding: security basics'];
const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('console and participant page', () => {
  let hub;
  let browser;
  let ops;
  const pages = [];

  before(async () => {
    hub = await startHub({
      args: ['--demo', '3', '--slide-ms', '2500', '--think-ms', '3000', '--updates-per-s', '4', '--audience', '1', '--question-every-ms', '0'],
    });
    browser = await launchBrowser();
    ops = await newPage(browser.context);
    pages.push(ops);
    await signIn(ops, hub.url);
    await ops.getByText('Signed in as ops-1 (operator)').waitFor();
  });

  after(async () => {
    const problems = pages.flatMap((p) => p.problems());
    await browser?.close();
    await hub?.stop();
    assert.deepEqual(problems, [], 'the pages logged errors or CSP violations');
  });

  /** Opens a session in the console by its name in the list. */
  async function openSession(name) {
    await ops.getByRole('link', { name: new RegExp(escape(name)) }).click();
    await ops.getByRole('heading', { level: 2, name }).waitFor();
  }

  /** A participant tab on the focused session's page. */
  async function participant() {
    const href = await ops.getByRole('link', { name: 'Open participant page' }).getAttribute('href');
    const page = await newPage(browser.context);
    pages.push(page);
    await page.goto(`${hub.url}${href}`);
    await page.locator('#conn[data-state=connected]').waitFor();
    return page;
  }

  it('lists the demo sessions as links, live', async () => {
    await ops.locator('#conn[data-state=connected]').waitFor();
    for (const name of DEMO) await ops.getByRole('link', { name: new RegExp(escape(name)) }).waitFor();
    // The filter narrows the list.
    await ops.getByLabel('Filter sessions').fill('review');
    await until(async () => (await ops.locator('#session-list a').count()) === 1, 'one session left by the filter');
    await ops.getByLabel('Filter sessions').fill('');
    await until(async () => (await ops.locator('#session-list a').count()) === 3, 'all sessions back');
  });

  it('opening a session shows its slide advance live', async () => {
    await openSession(DEMO[0]);
    const slide = ops.locator('#current-slide');
    const first = await slide.getAttribute('data-slide');
    await until(async () => (await slide.getAttribute('data-slide')) !== first, 'the next slide', 8000);
    await ops.getByText('Renderer connected').waitFor();
    // The transcript and the speaking indicator move too.
    await until(async () => ((await ops.locator('.transcript').textContent()) ?? '—') !== '—', 'transcript text');
  });

  it('a participant’s question reaches the console within a second; duplicates are counted', async () => {
    await openSession(DEMO[1]);
    const ada = await participant();
    const bob = await participant();
    const text = `Does the console keep up, run ${randomId()}?`;
    await ada.getByLabel('Your question').fill(text);
    // Measured inside the browser (one clock for both tabs): from the
    // participant's submit to the line in the console's DOM.
    await ada.evaluate(() => document.getElementById('ask-form').addEventListener('submit', () => (window.__askedAt = Date.now()), { capture: true, once: true }));
    await ops.evaluate((t) => {
      const log = document.getElementById('conversation');
      new MutationObserver((_, obs) => {
        for (const li of log.querySelectorAll('li.question')) {
          if (li.textContent.includes(t)) {
            window.__seenAt = Date.now();
            obs.disconnect();
          }
        }
      }).observe(log, { childList: true, subtree: true, characterData: true });
    }, text);
    await ada.getByRole('button', { name: 'Ask' }).click();
    await ops.locator('#conversation li.question').filter({ hasText: text }).waitFor({ timeout: 5000 });
    const elapsed = (await ops.evaluate(() => window.__seenAt)) - (await ada.evaluate(() => window.__askedAt));
    console.log(`question → console: ${elapsed} ms`);
    assert.ok(elapsed < 1000, `the question took ${elapsed} ms to show`);
    // A second person asks the same: one queue line, counted twice.
    await bob.getByLabel('Your question').fill(text.toUpperCase());
    await bob.getByRole('button', { name: 'Ask' }).click();
    await ops.locator('#question-queue li').filter({ hasText: text }).getByText('×2').waitFor({ timeout: 3000 });
    // The avatar answers after thinking; Ada sees her answer.
    await ada.locator('#answers li').filter({ hasText: `You asked: ${text}` }).waitFor({ timeout: 10_000 });
    await ada.locator('#mine li[data-state=answered]').waitFor();
    await ops.locator('#conversation li.response').filter({ hasText: text }).first().waitFor();
    await ada.close();
    await bob.close();
  });

  it('takeover holds the avatar’s answer until the operator approves it', async () => {
    await openSession(DEMO[1]);
    const ada = await participant();
    await ops.getByRole('button', { name: 'Take over' }).click();
    await ops.getByText('You (ops-1) hold the session').waitFor();
    assert.equal(await ops.getByRole('button', { name: 'Release' }).isEnabled(), true);

    const text = `Can I pay by invoice, ${randomId()}?`;
    await ada.getByLabel('Your question').fill(text);
    await ada.getByRole('button', { name: 'Ask' }).click();
    const held = ops.locator('#held-responses li').filter({ hasText: text });
    await held.waitFor({ timeout: 10_000 });
    await ops.locator('#conversation li.held').filter({ hasText: text }).waitFor();
    // Held: the participant does not have it.
    assert.equal(await ada.locator('#answers li').filter({ hasText: text }).count(), 0);

    await held.getByRole('button', { name: 'Approve' }).click();
    await ada.locator('#answers li').filter({ hasText: `You asked: ${text}` }).waitFor({ timeout: 5000 });
    await until(async () => (await held.count()) === 0, 'the approved response to leave the held list');

    // A suggestion and a correction, from the keyboard.
    await ops.getByLabel('Suggestion for the avatar').fill('Mention the 30-day trial.');
    await ops.getByRole('button', { name: 'Send suggestion' }).focus();
    await ops.keyboard.press('Enter');
    await ops.locator('#conversation li.suggestion').filter({ hasText: 'Mention the 30-day trial.' }).waitFor();
    await ops.getByLabel('Correction', { exact: true }).fill('Invoices are available on yearly plans.');
    await ops.getByRole('button', { name: 'Send correction' }).click();
    await ada.getByText('Invoices are available on yearly plans.').waitFor();

    await ops.screenshot({ path: screenshotPath('console.png'), fullPage: true });
    await ada.screenshot({ path: screenshotPath('participant.png'), fullPage: true });

    await ops.getByRole('button', { name: 'Release' }).click();
    await ops.getByText('Autonomous: the avatar answers on its own.').waitFor();
    await ada.close();
  });

  it('emergency stop shows sent, then acknowledged with its latency', async () => {
    await openSession(DEMO[2]);
    const status = ops.locator('#stop-status');
    await ops.evaluate(() => {
      const el = document.getElementById('stop-status');
      window.__stopStates = [];
      new MutationObserver(() => window.__stopStates.push(el.dataset.state)).observe(el, { attributes: true, childList: true, characterData: true, subtree: true });
    });
    await ops.getByLabel('Reason').fill('drill');
    await ops.getByRole('button', { name: 'Emergency stop' }).click();
    await ops.locator('#stop-status[data-state=acknowledged]').waitFor({ timeout: 5000 });
    assert.match(await status.textContent(), /sent and acknowledged by the renderer in \d+ ms/);
    const states = await ops.evaluate(() => window.__stopStates);
    const firstAck = states.indexOf('acknowledged');
    assert.ok(states.slice(0, firstAck).some((s) => s === 'sent' || s === 'sending'), `states seen: ${states.join(', ')}`);
    // The session paused; the operator resumes it.
    await ops.locator('#session-view .facts .badge[data-status=paused]').waitFor();
    await ops.getByRole('button', { name: 'Take over' }).click();
    await ops.getByRole('button', { name: 'Resume' }).click();
    await ops.locator('#session-view .facts .badge[data-status=active]').waitFor();
    await ops.getByRole('button', { name: 'Release' }).click();
  });

  it('an emergency stop the renderer does not acknowledge escalates; the alert is acknowledged', async () => {
    const name = `Escalation drill ${randomId()}`;
    const created = await rest(hub.url, '/v1/sessions', { name });
    const renderer = await muteRenderer(hub.url, created.id);
    try {
      await ops.getByRole('link', { name: new RegExp(escape(name)) }).waitFor({ timeout: 8000 });
      await openSession(name);
      await ops.locator('#session-view .facts .badge[data-status=active]').waitFor();
      await ops.getByRole('button', { name: 'Emergency stop' }).click();
      await ops.locator('#stop-status[data-state=sent]').waitFor();
      await ops.locator('#stop-status[data-state=unacknowledged]').waitFor({ timeout: 6000 });
      assert.match(await ops.locator('#stop-status').textContent(), /escalated/);
      const alert = ops.locator('#alerts li').filter({ hasText: 'emergency stop not acknowledged' });
      await alert.waitFor();
      await ops.getByRole('link', { name: new RegExp(`${escape(name)}.*1 alert`) }).waitFor();
      await alert.getByRole('button', { name: 'Acknowledge' }).click();
      await ops.getByText('No open alerts.').waitFor();
    } finally {
      renderer.close();
    }
  });

  it('is usable from the keyboard', async () => {
    await ops.getByLabel('Filter sessions').fill(DEMO[0].slice(0, 7));
    await ops.getByLabel('Filter sessions').focus();
    let onLink = false;
    for (let i = 0; i < 6 && !onLink; i++) {
      await ops.keyboard.press('Tab');
      onLink = await ops.evaluate(() => document.activeElement?.matches('#session-list a') ?? false);
    }
    assert.ok(onLink, 'Tab reaches the session list');
    await ops.keyboard.press('Enter');
    await ops.getByRole('heading', { level: 2, name: DEMO[0] }).waitFor();
    await ops.getByLabel('Filter sessions').fill('');
    for (const name of ['Take over', 'Release', 'Emergency stop', 'Send suggestion']) {
      assert.equal(await ops.getByRole('button', { name, exact: true }).count(), 1, name);
    }
  });

  it('serves the pages with a strict CSP and cache headers', async () => {
    const html = await fetch(`${hub.url}/console/`);
    const csp = html.headers.get('content-security-policy') ?? '';
    for (const d of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"]) {
      assert.ok(csp.includes(d), `CSP has ${d}: ${csp}`);
    }
    assert.equal(html.headers.get('cache-control'), 'no-cache');
    assert.equal(html.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(html.headers.get('referrer-policy'), 'no-referrer');
    const body = await html.text();
    const asset = /src="(\/console\/assets\/[^"]+\.js)"/.exec(body)?.[1];
    assert.ok(asset, 'the page names its script');
    const js = await fetch(`${hub.url}${asset}`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get('cache-control') ?? '', /immutable/);
    const etag = html.headers.get('etag');
    const again = await fetch(`${hub.url}/console/`, { headers: { 'if-none-match': etag } });
    assert.equal(again.status, 304);
    const page = await fetch(`${hub.url}/s/00000000-0000-7000-8000-000000000000`);
    assert.equal(page.status, 200);
    assert.ok((page.headers.get('content-security-policy') ?? '').includes("script-src 'self'"));
    const config = await (await fetch(`${hub.url}/console/config.json`)).json();
    assert.equal(config.dev, true);
  });
});

/** A renderer that joins, goes active, and never acknowledges anything. */
async function muteRenderer(url, session) {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/v1/ws`, ['eva.v1.json'], { headers: { authorization: `Bearer dev:renderer:mute-${randomId()}` } });
  await new Promise((ok, fail) => {
    ws.on('error', fail);
    ws.on('message', (data) => {
      const f = JSON.parse(String(data));
      if (f.type === 'welcome') ws.send(JSON.stringify({ type: 'join', session, id: 'j1' }));
      if (f.type === 'snapshot') {
        ws.send(JSON.stringify({ type: 'status', session, status: 'active', id: 's1' }));
        ok();
      }
    });
  });
  return ws;
}
