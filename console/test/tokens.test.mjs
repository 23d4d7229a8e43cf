// Bad and expired tokens get a clear message, never a blank page; a hub
// with real credentials serves the console to an operator JWT.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { freePort, hubCommand, launchBrowser, newPage, rest, signIn, startHub } from './harness.mjs';

describe('tokens', () => {
  let dev;
  let browser;

  before(async () => {
    dev = await startHub();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await dev?.stop();
  });

  it('a bad token in the console says so and keeps the sign-in form', async () => {
    const page = await newPage(browser.context);
    await signIn(page, dev.url, 'not-a-token');
    await page.getByRole('alert').getByText(/The hub refused this token: the hub refused the token \(missing or invalid\)/).waitFor();
    assert.equal(await page.getByLabel('Connection token').isVisible(), true);
    await signIn(page, dev.url, 'dev:participant:ada');
    await page.getByRole('alert').getByText('This is a participant token; the console needs an operator token').waitFor();
    await page.close();
  });

  it('a bad token on the participant page says so', async () => {
    const s = await rest(dev.url, '/v1/sessions', { name: 'Token test' });
    const page = await newPage(browser.context);
    await page.goto(`${dev.url}/s/${s.id}#token=garbage`);
    await page.getByRole('alert').getByText(/Your access link is not valid/).waitFor();
    assert.equal(new URL(page.url()).hash, '', 'the token is removed from the address bar');
    await page.getByLabel('Access token').waitFor();
    // A session that does not exist is named as such.
    await page.goto(`${dev.url}/s/${randomUUID()}`);
    await page.getByRole('alert').getByText(/There is no such session/).waitFor();
    await page.close();
  });

  it('an expired token says so; a fresh one signs in (hub with credentials)', async () => {
    const port = await freePort();
    const env = {
      EVA_HUB_JWT_SECRET: randomBytes(48).toString('base64'),
      EVA_HUB__AUTH__KEYS: '[{kid="k1",algorithm="HS256",secret_env="EVA_HUB_JWT_SECRET"}]',
      EVA_HUB__AUTH__ALLOWED_ORIGINS: `["http://127.0.0.1:${port}"]`,
      EVA_HUB__AUTH__LEEWAY_S: '0',
    };
    const hub = await startHub({ dev: false, port, env });
    try {
      const tenant = randomUUID();
      const mint = (ttl) => hubCommand(['token', '--tenant', tenant, '--role', 'operator', '--subject', 'ops-9', '--ttl-s', String(ttl)], env);
      const expired = mint(1);
      await new Promise((r) => setTimeout(r, 2100));
      const page = await newPage(browser.context);
      await page.goto(`${hub.url}/console/`);
      assert.equal(await page.getByLabel('Connection token').inputValue(), '', 'no development token outside --dev');
      await page.getByLabel('Connection token').fill(expired);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('alert').getByText(/Your token has expired/).waitFor();
      await page.getByLabel('Connection token').fill(mint(600));
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByText('Signed in as ops-9 (operator)').waitFor();
      await page.locator('#conn[data-state=connected]').waitFor();
      await page.close();
    } finally {
      await hub.stop();
    }
  });
});
