// A hub restart: the console and the participant page reconnect by
// themselves, without a reload, and the conversation neither loses nor
// repeats a line.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, newPage, randomId, signIn, startHub, until } from './harness.mjs';

describe('hub restart', () => {
  const dir = mkdtempSync(join(tmpdir(), 'eva-restart-'));
  const database = `sqlite://${join(dir, 'hub.db')}`;
  const args = ['--demo', '1', '--think-ms', '700', '--slide-ms', '3000', '--audience', '0', '--question-every-ms', '0'];
  let hub;
  let browser;

  before(async () => {
    hub = await startHub({ args, database });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await hub?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('both pages come back without a reload, without losing or repeating lines', async () => {
    const ops = await newPage(browser.context);
    await signIn(ops, hub.url);
    await ops.getByRole('link', { name: /Product tour/ }).click();
    await ops.getByRole('heading', { level: 2, name: 'Product tour: Eva Studio' }).waitFor();
    const href = await ops.getByRole('link', { name: 'Open participant page' }).getAttribute('href');
    const guest = await newPage(browser.context);
    await guest.goto(`${hub.url}${href}`);
    await guest.locator('#conn[data-state=connected]').waitFor();

    const q1 = `Before the restart ${randomId()}?`;
    await guest.getByLabel('Your question').fill(q1);
    await guest.getByRole('button', { name: 'Ask' }).click();
    await guest.locator('#answers li').filter({ hasText: `You asked: ${q1}` }).waitFor({ timeout: 8000 });
    await ops.locator('#conversation li.response').filter({ hasText: q1 }).waitFor();

    // Mark the pages (a reload would lose it) and record connection states.
    for (const p of [ops, guest]) {
      await p.evaluate(() => {
        window.__notReloaded = true;
        const el = document.getElementById('conn');
        window.__states = [];
        new MutationObserver(() => window.__states.push(el.dataset.state)).observe(el, { attributes: true });
      });
    }

    await hub.stop();
    for (const p of [ops, guest]) await p.locator('#conn[data-state=reconnecting]').waitFor({ timeout: 5000 });
    await ops.getByText(/Reconnecting/).waitFor();
    hub = await startHub({ args, database, port: hub.port });

    for (const p of [ops, guest]) {
      await p.locator('#conn[data-state=connected]').waitFor({ timeout: 15_000 });
      assert.equal(await p.evaluate(() => window.__notReloaded), true, 'the page was not reloaded');
    }
    // The renderer is back too, and the session goes on.
    await ops.getByText('Renderer connected').waitFor({ timeout: 10_000 });

    const q2 = `After the restart ${randomId()}?`;
    await guest.getByLabel('Your question').fill(q2);
    await guest.getByRole('button', { name: 'Ask' }).click();
    await guest.locator('#answers li').filter({ hasText: `You asked: ${q2}` }).waitFor({ timeout: 10_000 });
    await ops.locator('#conversation li.response').filter({ hasText: q2 }).waitFor();

    // Every line once: the question and its answer from before, and after.
    for (const q of [q1, q2]) {
      await until(async () => (await ops.locator('#conversation li.question').filter({ hasText: q }).count()) === 1, `one question line for ${q}`);
      assert.equal(await ops.locator('#conversation li.response').filter({ hasText: q }).count(), 1, `one answer line for ${q} in the console`);
      assert.equal(await guest.locator('#answers > li').filter({ hasText: q }).count(), 1, `one answer for ${q} on the participant page`);
    }
    assert.deepEqual([...ops.problems(), ...guest.problems()], []);
  });
});
