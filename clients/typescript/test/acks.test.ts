// Frames with ids against a real hub: acks after commit, duplicate acks on
// resend (explicit and after a reconnect), frames kept while offline,
// rejection on a final close, ack timeouts, and automatic retries of
// rate-limited frames.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AckTimeoutError, ConnectionClosedError, HubError, HubRest } from '../src/index.js';
import { newClient, frameType, sleep, socketControl, startHub, waitFor, type Hub } from './harness.js';

const fast = { minDelayMs: 20, maxDelayMs: 100 };

describe('acks', () => {
  let hub: Hub;
  let rest: HubRest;
  before(async () => {
    hub = await startHub();
    rest = new HubRest({ baseUrl: hub.httpUrl });
  });
  after(async () => {
    await hub?.stop();
  });

  async function setup(subject: string) {
    const sid = (await rest.createSession()).id;
    const control = socketControl();
    const client = newClient({ url: hub.wsUrl, token: `dev:participant:${subject}`, WebSocket: control.WebSocket, reconnect: fast });
    const session = client.join(sid);
    const op = newClient({ url: hub.wsUrl, token: 'dev:operator:ops-acks', WebSocket: socketControl().WebSocket });
    const watch = op.join(sid);
    const questions: string[] = [];
    watch.on('event:question', (q) => questions.push(q.question_id));
    await Promise.all([session.ready, watch.ready]);
    return { sid, control, client, session, op, questions };
  }

  async function storedQuestions(sid: string): Promise<number> {
    const page = await rest.conversation(sid);
    return page.items.filter((r) => r.message_type === 'question').length;
  }

  it('a resend of an acked id is answered with the original ack and duplicate: true', async () => {
    const t = await setup('dup');
    const first = await t.session.ask('Once?', { id: 'q-fixed-1' });
    assert.equal(first.id, 'q-fixed-1');
    assert.equal(first.duplicate ?? false, false);
    const again = await t.session.ask('Once?', { id: 'q-fixed-1' });
    assert.equal(again.duplicate, true);
    assert.equal(again.ref_id, first.ref_id);
    assert.equal(await storedQuestions(t.sid), 1, 'stored once');
    assert.equal(t.questions.length, 1, 'published once');
    t.client.close();
    t.op.close();
  });

  it('a frame whose ack was lost is resent with the same id after a reconnect', async () => {
    const t = await setup('lost-ack');
    t.control.drop = (data) => frameType(data) === 'ack';
    const pending = t.session.ask('Did you get this?');
    await waitFor(() => t.questions.length === 1, 'the question at the operator');
    await sleep(30);
    assert.equal(t.client.pendingCount, 1, 'still waiting: its ack was lost');
    t.control.drop = undefined;
    t.control.kill();
    const ack = await pending;
    assert.equal(ack.duplicate, true, 'the hub recognised the resend');
    assert.equal(ack.ref_id, t.questions[0]);
    await sleep(50);
    assert.equal(t.questions.length, 1, 'no second question');
    assert.equal(await storedQuestions(t.sid), 1);
    t.client.close();
    t.op.close();
  });

  it('frames sent while offline go out after the rejoin', async () => {
    const t = await setup('offline');
    t.control.online = false;
    t.control.kill();
    await waitFor(() => t.client.state === 'reconnecting', 'reconnecting');
    const pending = t.session.ask('Sent while offline');
    await sleep(50);
    assert.equal(t.client.pendingCount, 1);
    t.control.online = true;
    const ack = await pending;
    assert.equal(ack.duplicate ?? false, false);
    assert.equal(t.questions.length, 1);
    t.client.close();
    t.op.close();
  });

  it('a final close rejects waiting frames with their ids', async () => {
    const t = await setup('final');
    t.control.online = false;
    t.control.kill();
    await waitFor(() => t.client.state === 'reconnecting', 'reconnecting');
    const pending = t.session.ask('Never sent', { id: 'q-never' });
    t.client.close();
    await assert.rejects(pending, (e: unknown) => e instanceof ConnectionClosedError && e.closeCode === 1000 && e.frameId === 'q-never');
    await assert.rejects(t.session.ready.then(() => t.session.ask('after close')), /session .* was left/);
    assert.equal(t.client.state, 'closed');
    t.op.close();
  });

  it('an ack timeout rejects with AckTimeoutError', async () => {
    const t = await setup('timeout');
    t.control.drop = (data) => frameType(data) === 'ack';
    await assert.rejects(t.session.ask('Slow?', { timeoutMs: 100 }), (e: unknown) => e instanceof AckTimeoutError);
    assert.equal(t.client.pendingCount, 0);
    t.client.close();
    t.op.close();
  });
});

describe('retryable refusals', () => {
  let hub: Hub;
  before(async () => {
    hub = await startHub({
      env: { EVA_HUB__LIMITS__INTERACTIONS_PER_S: '10', EVA_HUB__LIMITS__INTERACTIONS_BURST: '2' },
    });
  });
  after(async () => {
    await hub?.stop();
  });

  it('rate_limited frames are resent after retry_after_ms with the same id', async () => {
    const rest = new HubRest({ baseUrl: hub.httpUrl });
    const sid = (await rest.createSession()).id;
    const control = socketControl();
    let refusals = 0;
    // Peek at what the hub answers (hiding nothing).
    control.drop = (data) => {
      if (frameType(data) === 'error') refusals++;
      return false;
    };
    const op = newClient({ url: hub.wsUrl, token: 'dev:operator:burst', WebSocket: control.WebSocket });
    const s = op.join(sid);
    const seen: number[] = [];
    s.onCustom<{ n: number }>('burst', (d) => seen.push(d.n));
    await s.ready;
    const acks = await Promise.all(Array.from({ length: 8 }, (_, n) => s.publish('burst', { n })));
    assert.equal(acks.length, 8);
    await waitFor(() => seen.length === 8, 'all eight events');
    assert.deepEqual([...seen].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7], 'each published once');
    assert.ok(refusals > 0, 'the hub refused some (rate_limited) and they were retried');
    op.close();
  });

  it('gives up after maxRetries with the typed, retryable error', async () => {
    const rest = new HubRest({ baseUrl: hub.httpUrl });
    const sid = (await rest.createSession()).id;
    const op = newClient({ url: hub.wsUrl, token: 'dev:operator:impatient', WebSocket: socketControl().WebSocket, maxRetries: 0 });
    const s = op.join(sid);
    await s.ready;
    const results = await Promise.allSettled(Array.from({ length: 6 }, (_, n) => s.publish('burst', { n })));
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as unknown);
    assert.ok(refused.length > 0, 'some were refused');
    for (const e of refused) {
      assert.ok(e instanceof HubError);
      assert.equal(e.code, 'rate_limited');
      assert.equal(e.retryable, true);
      assert.ok((e.retryAfterMs ?? 0) > 0);
    }
    op.close();
  });
});
