// A frame whose ack was lost is resent with the same id after the
// reconnect, and the hub answers with the original outcome: `duplicate:
// true`, the original seq and ref_id, no second event and no error. For
// every frame that takes an id beyond questions (acks.test.ts): state,
// context, status, takeover, approve and release.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { HubRest, type AckFrame, type EventFrame, type EventKind, type HubError, type Session } from '../src/index.js';
import { frameType, newClient, sleep, socketControl, startHub, waitFor, type Hub, type SocketControl } from './harness.js';

const fast = { minDelayMs: 20, maxDelayMs: 100 };

describe('resend after a lost ack', () => {
  let hub: Hub;
  let renderer: Session;
  let operator: Session;
  let watcher: Session;
  let rc: SocketControl;
  let oc: SocketControl;
  const seen = new Map<EventKind, EventFrame[]>();
  const errors: HubError[] = [];

  before(async () => {
    hub = await startHub();
    const rest = new HubRest({ baseUrl: hub.httpUrl });
    const sid = (await rest.createSession({ name: 'resends' })).id;
    rc = socketControl();
    oc = socketControl();
    renderer = newClient({ url: hub.wsUrl, token: 'dev:renderer:resender', WebSocket: rc.WebSocket, reconnect: fast }).join(sid);
    operator = newClient({ url: hub.wsUrl, token: 'dev:operator:ops-resend', WebSocket: oc.WebSocket, reconnect: fast }).join(sid);
    watcher = newClient({ url: hub.wsUrl, token: 'dev:operator:ops-watch', WebSocket: socketControl().WebSocket }).join(sid);
    watcher.on('event', (f) => seen.set(f.event.kind, [...(seen.get(f.event.kind) ?? []), f]));
    for (const s of [renderer, operator, watcher]) s.on('error', (e) => errors.push(e));
    await Promise.all([renderer.ready, operator.ready, watcher.ready]);
    // The renderer's join moves the session to `starting` on its own; the
    // watcher must have that status (from its snapshot or as an event)
    // before the first test counts lifecycle events.
    await waitFor(() => watcher.getState().status === 'starting', 'the session to start');
  });
  after(async () => {
    await hub?.stop();
  });

  const count = (kind: EventKind) => seen.get(kind)?.length ?? 0;

  /**
   * Sends with acks hidden, waits until the effect reached the watcher,
   * then drops the socket: the SDK resends the frame, same id, after the
   * rejoin. Returns both the ack and the event the first send produced.
   */
  async function withLostAck(
    control: SocketControl,
    kind: EventKind,
    send: () => Promise<AckFrame>,
    between?: () => Promise<unknown>,
  ): Promise<{ ack: AckFrame; event: EventFrame }> {
    const before = count(kind);
    control.drop = (data) => frameType(data) === 'ack';
    const pending = send();
    await waitFor(() => count(kind) === before + 1, `the ${kind} event`);
    await between?.();
    await sleep(30);
    control.drop = undefined;
    control.kill();
    const ack = await pending;
    await sleep(100);
    assert.equal(count(kind), before + 1, `no second ${kind} event`);
    return { ack, event: seen.get(kind)?.at(-1) as EventFrame };
  }

  it('status', async () => {
    const { ack, event } = await withLostAck(rc, 'lifecycle', () => renderer.setStatus('active'));
    assert.equal(ack.duplicate, true);
    assert.equal(ack.seq, event.seq, 'the original seq');
    assert.equal(watcher.getState().status, 'active');
  });

  it('state', async () => {
    const { ack, event } = await withLostAck(rc, 'state', () => renderer.setState({ current_slide: 4 }));
    assert.equal(ack.duplicate, true);
    assert.equal(ack.seq, event.seq);
  });

  it('context', async () => {
    const { ack, event } = await withLostAck(rc, 'context', () => renderer.setContext({ flow: 'qa' }));
    assert.equal(ack.duplicate, true);
    assert.equal(ack.seq, event.seq);
  });

  it('takeover', async () => {
    // Another event between the takeover and its resend: the duplicate ack
    // must still name the takeover's own seq.
    const { ack, event } = await withLostAck(oc, 'takeover', () => operator.takeover('checking'), () => renderer.setState({ current_slide: 5 }));
    assert.equal(ack.duplicate, true);
    assert.equal(ack.seq, event.seq, 'the original seq, not the current one');
    assert.equal(ack.ref_id, (event.event as { intervention_id: string }).intervention_id);
  });

  it('approve', async () => {
    const held = await renderer.respond({ text: 'held for review', confidence: 0.5, response_time_ms: 10 });
    await waitFor(() => operator.getState().heldResponses.some((h) => h.response_id === held.ref_id), 'the held response');
    const { ack, event } = await withLostAck(oc, 'response', () => operator.approve(held.ref_id as string));
    assert.equal(ack.duplicate, true);
    assert.equal(ack.seq, event.seq);
    assert.equal((event.event as { response_id: string }).response_id, held.ref_id);
  });

  it('release', async () => {
    const { ack, event } = await withLostAck(oc, 'release', () => operator.release());
    assert.equal(ack.duplicate, true);
    assert.equal(ack.seq, event.seq);
    assert.equal(watcher.getState().control?.controller, null);
  });

  it('none of them was refused', () => {
    assert.deepEqual(errors, []);
    assert.equal(renderer.joined && operator.joined, true);
  });
});
