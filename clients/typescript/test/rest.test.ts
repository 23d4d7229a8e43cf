// The REST wrapper against a real hub: sessions, status, app events,
// history paging, keys, and typed errors; and every call it made is an
// operation of docs/openapi.json (the bodies' types are generated from it).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { HubError, HubRest } from '../src/index.js';
import { newClient, socketControl, startHub, startProdHub, waitFor, type Hub, type ProdHub } from './harness.js';

const openapi = JSON.parse(readFileSync(fileURLToPath(new URL('../../../../docs/openapi.json', import.meta.url)), 'utf8')) as {
  paths: Record<string, Record<string, unknown>>;
};

/** Every (method, path) HubRest sent, through the real fetch. */
const calls: { method: string; path: string }[] = [];
const recordingFetch: typeof fetch = (input, init) => {
  calls.push({ method: (init?.method ?? 'GET').toLowerCase(), path: new URL(String(input)).pathname });
  return fetch(input, init);
};

/** The OpenAPI path template a concrete path fills in, if any. */
function operationOf(method: string, path: string): string | undefined {
  return Object.keys(openapi.paths).find((template) => {
    const re = new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`);
    return re.test(path) && method in (openapi.paths[template] ?? {});
  });
}

describe('HubRest', () => {
  let hub: Hub;
  let rest: HubRest;
  before(async () => {
    hub = await startHub();
    rest = new HubRest({ baseUrl: `${hub.httpUrl}/`, fetch: recordingFetch });
  });
  after(async () => {
    await hub?.stop();
  });

  it('creates, gets and lists sessions (paged, newest first)', async () => {
    const created = [];
    for (const name of ['one', 'two', 'three']) created.push(await rest.createSession({ name, config: { lang: 'en' } }));
    const [first] = created;
    assert.ok(first);
    assert.equal(first.status, 'created');
    assert.deepEqual(first.config, { lang: 'en' });
    const got = await rest.getSession(first.id);
    assert.equal(got.name, 'one');
    const page1 = await rest.listSessions({ limit: 2 });
    assert.equal(page1.items.length, 2);
    assert.equal(page1.items[0]?.id, created[2]?.id, 'newest first');
    assert.ok(page1.next_before);
    const page2 = await rest.listSessions({ limit: 2, before: page1.next_before });
    assert.ok(page2.items.some((s) => s.id === first.id));
    const filtered = await rest.listSessions({ status: 'created', limit: 500 });
    assert.ok(filtered.items.every((s) => s.status === 'created'));
  });

  it('changes status and stops; refusals are typed', async () => {
    const s = await rest.createSession();
    await assert.rejects(rest.setStatus(s.id, 'paused'), (e: unknown) => e instanceof HubError && e.code === 'illegal_transition' && e.status === 409);
    const starting = await rest.setStatus(s.id, 'starting', 'warming up');
    assert.equal(starting.status, 'starting');
    const stopped = await rest.stopSession(s.id, 'done');
    assert.equal(stopped.status, 'stopped', 'no renderer: straight to stopped');
    await assert.rejects(rest.getSession('00000000-0000-7000-8000-000000000000'), (e: unknown) => e instanceof HubError && e.code === 'not_found' && e.status === 404);
    await assert.rejects(rest.getSession('not-a-uuid'), (e: unknown) => e instanceof HubError && e.code === 'not_found');
    await assert.rejects(rest.postEvent(s.id, { name: 'Bad Name' }), (e: unknown) => e instanceof HubError && e.status === 400);
  });

  it('publishes app events into the stream', async () => {
    const s = await rest.createSession();
    const c = newClient({ url: hub.wsUrl, token: 'dev:participant:rest-reader', WebSocket: socketControl().WebSocket });
    const session = c.join(s.id);
    const got: unknown[] = [];
    session.onCustom('webhook.booking_created', (d) => got.push(d));
    await session.ready;
    const r = await rest.postEvent(s.id, { name: 'webhook.booking_created', data: { booking: 42 } });
    assert.equal(r.session, s.id);
    assert.ok(r.seq > 1);
    await waitFor(() => got.length === 1, 'the event at the participant');
    assert.deepEqual(got[0], { booking: 42 });
    const staffOnly = await rest.postEvent(s.id, { name: 'escalation.requested', audience: 'operators', data: null });
    assert.ok(staffOnly.seq > r.seq);
    c.close();
  });

  it('pages conversation, interventions and alerts history', async () => {
    const s = await rest.createSession();
    const p = newClient({ url: hub.wsUrl, token: 'dev:participant:historian', WebSocket: socketControl().WebSocket }).join(s.id);
    const o = newClient({ url: hub.wsUrl, token: 'dev:operator:ops-h', WebSocket: socketControl().WebSocket }).join(s.id);
    await Promise.all([p.ready, o.ready]);
    for (const text of ['q1', 'q2', 'q3']) await p.ask(text);
    await o.suggest('be brief');
    const page1 = await rest.conversation(s.id, { limit: 2 });
    assert.equal(page1.items.length, 2);
    assert.equal(page1.items[0]?.content, 'q3', 'newest first');
    const page2 = await rest.conversation(s.id, { limit: 2, before: page1.next_before });
    assert.deepEqual(page2.items.map((r) => r.content), ['q1']);
    const interventions = await rest.interventions(s.id);
    assert.equal(interventions.items[0]?.intervention_type, 'suggestion');
    assert.equal(interventions.items[0]?.operator_id, 'ops-h');
    const alerts = await rest.alerts(s.id);
    assert.deepEqual(alerts.items, []);
  });

  it('creates a job whose owner watches it live, and refuses progress going backwards', async () => {
    const job = await rest.createJob({ type: 'voice_clone', owner: 'alice', metadata: { sample: 'a.wav' } });
    assert.equal(job.status, 'pending');
    assert.equal(job.progress, 0);
    const alice = newClient({ url: hub.wsUrl, token: 'dev:participant:alice', WebSocket: socketControl().WebSocket });
    const watching = alice.join(job.stream);
    await watching.ready;
    assert.deepEqual(watching.getState().jobs.map((j) => j.id), [job.id], 'the snapshot shows the job');
    const seen: number[] = [];
    watching.on('event:job', (e) => seen.push(e.job.progress));
    await rest.updateJob(job.id, { progress: 30 });
    await rest.updateJob(job.id, { progress: 60 });
    await assert.rejects(rest.updateJob(job.id, { progress: 10 }), (e: unknown) => e instanceof HubError && e.code === 'conflict' && e.status === 409);
    const done = await rest.updateJob(job.id, { status: 'completed', result: { voice_id: 'v-1' } });
    assert.equal(done.progress, 100);
    await waitFor(() => watching.getState().jobs[0]?.status === 'completed', 'the completed job');
    assert.deepEqual(seen, [30, 60, 100]);
    assert.deepEqual(await rest.getJob(job.id), done);
    const listed = await rest.listJobs({ type: 'voice_clone', status: 'completed' });
    assert.ok(listed.items.some((j) => j.id === job.id));
    alice.close();
  });

  it('mints connection tokens a client connects with (plain claims in --dev)', async () => {
    const s = await rest.createSession();
    const issued = await rest.mintToken({ role: 'participant', subject: 'minted', name: 'Min', sessions: [s.id] });
    assert.equal(issued.token_type, 'Bearer');
    const c = newClient({ url: hub.wsUrl, token: issued.token, WebSocket: socketControl().WebSocket });
    await c.join(s.id).ready;
    assert.equal(c.welcome?.subject, 'minted');
    c.close();
    await assert.rejects(rest.mintToken({ role: 'participant', subject: 'no-sessions' }), (e: unknown) => e instanceof HubError && e.code === 'invalid' && e.status === 400);
  });
});

describe('HubRest keys (production hub)', () => {
  let hub: ProdHub;
  before(async () => {
    hub = await startProdHub();
  });
  after(async () => {
    await hub?.stop();
  });

  it('creates, lists and revokes API keys', async () => {
    const admin = new HubRest({ baseUrl: hub.httpUrl, apiKey: hub.adminKey, fetch: recordingFetch });
    const created = await admin.createKey({ name: 'backend', scopes: ['eva:read', 'eva:write'] });
    assert.match(created.key, /^evk_/);
    const reader = new HubRest({ baseUrl: hub.httpUrl, apiKey: created.key, fetch: recordingFetch });
    assert.ok(Array.isArray((await reader.listSessions()).items));
    const listed = await admin.listKeys();
    assert.ok(listed.items.some((k) => k.id === created.id && k.name === 'backend'));
    assert.ok(listed.items.every((k) => !('key' in k)), 'no key values in the listing');
    await admin.revokeKey(created.id);
    await assert.rejects(reader.listSessions(), (e: unknown) => e instanceof HubError && e.status === 401);
    await assert.rejects(admin.revokeKey('00000000-0000-7000-8000-000000000000'), (e: unknown) => e instanceof HubError && e.code === 'not_found');
  });
});

describe('HubRest and docs/openapi.json', () => {
  it('every call the tests above made is a documented operation', () => {
    assert.ok(calls.length > 10, 'the REST tests ran first');
    const undocumented = calls.filter((c) => operationOf(c.method, c.path) === undefined);
    assert.deepEqual(undocumented, []);
    const used = new Set(calls.map((c) => `${c.method} ${operationOf(c.method, c.path)}`));
    for (const op of ['post /v1/sessions', 'get /v1/sessions/{id}', 'post /v1/tokens', 'get /v1/sessions/{id}/conversation', 'post /v1/keys', 'delete /v1/keys/{id}']) {
      assert.ok(used.has(op), `${op} was exercised`);
    }
  });
});
