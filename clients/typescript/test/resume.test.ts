// Reconnect and resume against a real hub: a socket killed without a close
// frame, events published while the client is offline, and the three
// outcomes of a resume (exact, nothing missed, discontinuity), plus a hub
// restart (1012, new epoch).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type EvaClient,
  HubRest,
  type CodecName,
  type ConnectionStatus,
  type DiscontinuityFrame,
  type ResumedFrame,
  type Session,
} from '../src/index.js';
import { newClient, next, sleep, socketControl, startHub, waitFor, type Hub, type SocketControl } from './harness.js';

const fast = { minDelayMs: 20, maxDelayMs: 100 };

interface Watched {
  client: EvaClient;
  control: SocketControl;
  statuses: ConnectionStatus[];
}

function watchedClient(hub: Hub, token: string, codec: CodecName): Watched {
  const control = socketControl();
  const client = newClient({ url: hub.wsUrl, token, codec, WebSocket: control.WebSocket, reconnect: fast });
  const statuses: ConnectionStatus[] = [];
  client.on('connection', (s) => statuses.push(s));
  return { client, control, statuses };
}

/** Collects the `n` of every `tick` custom event, and counts snapshots. */
function ticks(session: Session): { seen: number[]; snapshots: number } {
  const out = { seen: [] as number[], snapshots: 0 };
  session.onCustom<{ n: number }>('tick', (d) => out.seen.push(d.n));
  session.on('snapshot', () => out.snapshots++);
  return out;
}

async function publishTicks(rest: HubRest, session: string, from: number, to: number): Promise<void> {
  for (let n = from; n < to; n++) await rest.postEvent(session, { name: 'tick', data: { n } });
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

describe('resume after a killed socket', () => {
  let hub: Hub;
  let rest: HubRest;
  before(async () => {
    // Counters (sampled for everyone) go out 20 ms after a change, so a
    // test can wait for the stream to go quiet.
    hub = await startHub({ env: { EVA_HUB__SESSION__COUNTERS_INTERVAL_MS: '20' } });
    rest = new HubRest({ baseUrl: hub.httpUrl });
  });
  after(async () => {
    await hub?.stop();
  });

  for (const codec of ['json', 'msgpack'] as CodecName[]) {
    it(`loses and repeats nothing (${codec})`, async () => {
      const sid = (await rest.createSession()).id;
      const p = watchedClient(hub, `dev:participant:resume-${codec}`, codec);
      const session = p.client.join(sid);
      const got = ticks(session);
      await session.ready;
      await publishTicks(rest, sid, 0, 10);
      await waitFor(() => got.seen.length === 10, 'the first ten ticks');

      p.control.online = false;
      p.control.kill();
      await waitFor(() => p.client.state === 'reconnecting', 'reconnecting');
      const drop = p.statuses.find((s) => s.state === 'reconnecting');
      assert.equal(drop?.closeCode, 1006, 'a killed socket is an abnormal closure');
      await publishTicks(rest, sid, 10, 30);

      const resumed = next<[ResumedFrame]>((fn) => session.on('resumed', fn));
      p.control.online = true;
      const [r] = await resumed;
      assert.ok(r.from <= r.to, 'missed events follow');
      await waitFor(() => got.seen.length >= 30, 'the missed ticks');
      await publishTicks(rest, sid, 30, 40);
      await waitFor(() => got.seen.length >= 40, 'live ticks after the resume');
      await sleep(50);
      assert.deepEqual(got.seen, range(0, 40), 'every event once, in order');
      assert.equal(got.snapshots, 1, 'no second snapshot: the resume was exact');
      assert.equal(p.client.state, 'connected');
      assert.ok(p.control.sockets.length >= 3, 'reconnect attempts went through the (failing) network');
      p.client.close();
    });
  }

  it('handles a resume that missed nothing (from > to)', async () => {
    const sid = (await rest.createSession()).id;
    const p = watchedClient(hub, 'dev:participant:quiet', 'json');
    const session = p.client.join(sid);
    const got = ticks(session);
    await session.ready;
    await publishTicks(rest, sid, 0, 3);
    await waitFor(() => got.seen.length === 3, 'three ticks');
    await sleep(100); // the participant count of our own join is out
    const before = session.getState();
    const position = session.position;
    const resumed = next<[ResumedFrame]>((fn) => session.on('resumed', fn));
    p.control.kill();
    const [r] = await resumed;
    assert.equal(r.from, (position?.seq ?? 0) + 1);
    assert.ok(r.from > r.to, `nothing missed: from ${r.from} > to ${r.to}`);
    assert.equal(session.getState(), before, 'state untouched');
    await publishTicks(rest, sid, 3, 5);
    await waitFor(() => got.seen.length === 5, 'live again');
    assert.deepEqual(got.seen, range(0, 5));
    assert.equal(got.snapshots, 1);
    p.client.close();
  });

  it('reconnect() drops the socket and resumes', async () => {
    const sid = (await rest.createSession()).id;
    const p = watchedClient(hub, 'dev:participant:button', 'msgpack');
    const session = p.client.join(sid);
    await session.ready;
    const resumed = next<[ResumedFrame]>((fn) => session.on('resumed', fn));
    p.client.reconnect();
    await resumed;
    assert.equal(p.client.state, 'connected');
    assert.equal(p.control.sockets.length, 2);
    assert.ok(p.statuses.some((s) => s.state === 'reconnecting' && s.reason === 'reconnect requested'));
    p.client.close();
  });

  it('resumes every session of an operator on one connection', async () => {
    const a = (await rest.createSession({ name: 'a' })).id;
    const b = (await rest.createSession({ name: 'b' })).id;
    const o = watchedClient(hub, 'dev:operator:watcher', 'msgpack');
    const sa = o.client.join(a);
    const sb = o.client.join(b);
    const ga = ticks(sa);
    const gb = ticks(sb);
    await Promise.all([sa.ready, sb.ready]);
    assert.equal(o.client.sessions.size, 2);
    o.control.online = false;
    o.control.kill();
    await waitFor(() => o.client.state === 'reconnecting', 'reconnecting');
    await publishTicks(rest, a, 0, 5);
    await publishTicks(rest, b, 0, 7);
    o.control.online = true;
    await waitFor(() => ga.seen.length === 5 && gb.seen.length === 7, 'both sessions caught up');
    assert.deepEqual(ga.seen, range(0, 5));
    assert.deepEqual(gb.seen, range(0, 7));
    assert.equal(ga.snapshots + gb.snapshots, 2);
    o.client.close();
  });
});

describe('discontinuity when history is exceeded', () => {
  let hub: Hub;
  before(async () => {
    hub = await startHub({ env: { EVA_HUB__SESSION__HISTORY_SIZE: '8' } });
  });
  after(async () => {
    await hub?.stop();
  });

  it('replaces the state from the snapshot and tells the app', async () => {
    const rest = new HubRest({ baseUrl: hub.httpUrl });
    const sid = (await rest.createSession()).id;
    const renderer = newClient({ url: hub.wsUrl, token: 'dev:renderer:engine', WebSocket: socketControl().WebSocket });
    const rs = renderer.join(sid);
    await rs.ready;
    const p = watchedClient(hub, 'dev:participant:late', 'json');
    const session = p.client.join(sid);
    const got = ticks(session);
    await session.ready;
    await rs.setState({ current_slide: 3 });
    await waitFor(() => session.getState().state.current_slide === 3, 'slide 3');
    const stale = session.getState();

    p.control.online = false;
    p.control.kill();
    await waitFor(() => p.client.state === 'reconnecting', 'reconnecting');
    await publishTicks(rest, sid, 0, 20);
    await rs.setState({ current_slide: 7 });

    const disc = next<[DiscontinuityFrame]>((fn) => session.on('discontinuity', fn));
    p.control.online = true;
    const [d] = await disc;
    assert.equal(d.reason, 'history_trimmed');
    await waitFor(() => got.snapshots === 2, 'the fresh snapshot');
    const fresh = session.getState();
    assert.notEqual(fresh, stale);
    assert.equal(fresh.state.current_slide, 7, 'state comes from the snapshot');
    assert.equal(stale.state.current_slide, 3, 'the old state object is unchanged');
    assert.deepEqual(got.seen, [], 'the missed events are not replayed');
    assert.equal(session.position?.seq, d.seq);
    await publishTicks(rest, sid, 20, 22);
    await waitFor(() => got.seen.length === 2, 'live again');
    assert.deepEqual(got.seen, [20, 21]);
    p.client.close();
    renderer.close();
  });
});

describe('hub restart', () => {
  it('reconnects after 1012 and restarts from a snapshot under the new epoch', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eva-sdk-restart-'));
    const databaseUrl = `sqlite://${join(dir, 'eva.db')}`;
    let hub = await startHub({ databaseUrl });
    try {
      const rest = new HubRest({ baseUrl: hub.httpUrl });
      const sid = (await rest.createSession({ name: 'survivor' })).id;
      const p = watchedClient(hub, 'dev:participant:restart', 'msgpack');
      const session = p.client.join(sid);
      await session.ready;
      const epoch = session.position?.epoch;
      await hub.stop();
      await waitFor(() => p.statuses.some((s) => s.closeCode === 1012), 'close 1012');
      assert.equal(p.client.state, 'reconnecting', '1012 means reconnect');
      const disc = next<[DiscontinuityFrame]>((fn) => session.on('discontinuity', fn), 20_000);
      hub = await startHub({ databaseUrl, listen: hub.listen });
      const [d] = await disc;
      assert.equal(d.reason, 'epoch_changed');
      await waitFor(() => session.position?.epoch === d.epoch, 'the new epoch');
      assert.notEqual(session.position?.epoch, epoch);
      assert.equal(session.getState().name, 'survivor');
      assert.equal(p.client.state, 'connected');
      p.client.close();
    } finally {
      await hub.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
