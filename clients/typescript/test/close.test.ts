// Final close codes surface as typed errors without retry loops; token
// expiry (4002) calls the token provider again and resumes; a dead socket
// is found by the heartbeat and replaced.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  ConnectionClosedError,
  HandshakeError,
  HubError,
  HubRest,
  type ConnectionStatus,
  type EvaError,
  type ResumedFrame,
} from '../src/index.js';
import { newClient, next, sleep, socketControl, startHub, startProdHub, waitFor, type Hub, type ProdHub } from './harness.js';

const fast = { minDelayMs: 20, maxDelayMs: 100 };

describe('final close codes', () => {
  let hub: Hub;
  let rest: HubRest;
  before(async () => {
    hub = await startHub();
    rest = new HubRest({ baseUrl: hub.httpUrl });
  });
  after(async () => {
    await hub?.stop();
  });

  it('a bad token in the auth frame is 4501, once', async () => {
    const control = socketControl();
    const client = newClient({ url: hub.wsUrl, token: 'not-a-claim', auth: 'frame', WebSocket: control.WebSocket, reconnect: fast });
    await assert.rejects(client.connect(), (e: unknown) => e instanceof ConnectionClosedError && e.closeCode === 4501 && e.closeName === 'unauthorized' && !e.reconnectable);
    assert.equal(client.state, 'closed');
    assert.equal(client.status.closeCode, 4501);
    await sleep(300);
    assert.equal(control.sockets.length, 1, 'no retry loop');
  });

  it('a bad token in the header is HTTP 401, once', async () => {
    const control = socketControl();
    const client = newClient({ url: hub.wsUrl, token: 'not-a-claim', auth: 'header', WebSocket: control.WebSocket, reconnect: fast });
    await assert.rejects(client.connect(), (e: unknown) => e instanceof HandshakeError && e.status === 401);
    await sleep(300);
    assert.equal(control.sockets.length, 1, 'no retry loop');
  });

  it('a renderer replaced by takeover gets 4504 and stays closed', async () => {
    const sid = (await rest.createSession()).id;
    const control = socketControl();
    const first = newClient({ url: hub.wsUrl, token: 'dev:renderer:old-engine', WebSocket: control.WebSocket, reconnect: fast });
    const old = first.join(sid);
    const oldJoined = next<[{ fence?: number | null }]>((fn) => old.on('joined', fn));
    await old.ready;
    const [{ fence: oldFence }] = await oldJoined;
    let leftWith: EvaError | null | undefined;
    old.on('left', (e) => (leftWith = e));

    // A second renderer without takeover is refused (and the join is not retried).
    const intruder = newClient({ url: hub.wsUrl, token: 'dev:renderer:intruder', WebSocket: socketControl().WebSocket });
    await assert.rejects(intruder.join(sid).ready, (e: unknown) => e instanceof HubError && e.code === 'renderer_active');
    intruder.close();

    const second = newClient({ url: hub.wsUrl, token: 'dev:renderer:new-engine', WebSocket: socketControl().WebSocket });
    const replacement = second.join(sid, { takeover: true });
    const joined = next<[{ fence?: number | null }]>((fn) => replacement.on('joined', fn));
    await replacement.ready;
    const [{ fence }] = await joined;
    assert.ok((fence ?? 0) > (oldFence ?? 0), 'a new fence');
    await waitFor(() => first.state === 'closed', 'the old renderer closed');
    assert.equal(first.status.closeCode, 4504);
    assert.equal(first.status.closeName, 'replaced');
    assert.ok(leftWith instanceof ConnectionClosedError && leftWith.closeCode === 4504);
    await assert.rejects(old.setState({ current_slide: 1 }), /was left/);
    await sleep(300);
    assert.equal(control.sockets.length, 1, 'the replaced renderer does not come back');
    second.close();
  });

  it('a participant of an ended session gets 4505', async () => {
    const sid = (await rest.createSession()).id;
    const control = socketControl();
    const client = newClient({ url: hub.wsUrl, token: 'dev:participant:leaving', WebSocket: control.WebSocket, reconnect: fast });
    await client.join(sid).ready;
    await rest.stopSession(sid, 'done');
    await waitFor(() => client.state === 'closed', 'closed');
    assert.equal(client.status.closeCode, 4505);
    await sleep(200);
    assert.equal(control.sockets.length, 1);
    const late = newClient({ url: hub.wsUrl, token: 'dev:participant:late', WebSocket: socketControl().WebSocket });
    await assert.rejects(late.join(sid).ready, (e: unknown) => e instanceof HubError && e.code === 'session_ended');
    assert.equal(late.sessions.size, 0, 'a refused session is forgotten');
    late.close();
  });

  it('close() while a socket is still opening ends quietly', async () => {
    // A listener that accepts TCP and never answers the upgrade: the
    // socket stays CONNECTING until the client gives up on it.
    const sockets: import('node:net').Socket[] = [];
    const server = (await import('node:net')).createServer((s) => sockets.push(s));
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    const port = (server.address() as import('node:net').AddressInfo).port;
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    process.on('uncaughtException', onUncaught);
    try {
      for (const WebSocket of [socketControl().WebSocket, (await import('ws')).default as unknown as import('../src/index.js').WebSocketConstructor]) {
        const client = newClient({ url: `ws://127.0.0.1:${port}/v1/ws`, token: 'dev:participant:early', WebSocket, reconnect: fast });
        const connecting = client.connect();
        await waitFor(() => sockets.length > 0, 'the TCP connection');
        client.close();
        await assert.rejects(connecting, (e: unknown) => e instanceof ConnectionClosedError && e.closeCode === 1000);
        await sleep(50);
        sockets.splice(0).forEach((s) => s.destroy());
      }
      assert.deepEqual(uncaught, [], 'no error escapes from the abandoned socket');
    } finally {
      process.off('uncaughtException', onUncaught);
      server.close();
    }
  });

  it('a silent socket is found by the heartbeat and replaced', async () => {
    const sid = (await rest.createSession()).id;
    const control = socketControl();
    const client = newClient({ url: hub.wsUrl, token: 'dev:participant:sleepy', WebSocket: control.WebSocket, reconnect: fast, heartbeatMs: 100 });
    const session = client.join(sid);
    await session.ready;
    const statuses: ConnectionStatus[] = [];
    client.on('connection', (s) => statuses.push(s));
    const resumed = next<[ResumedFrame]>((fn) => session.on('resumed', fn));
    // Stop reading: the TCP connection stays up, nothing arrives (a half-open socket).
    (control.sockets.at(-1) as unknown as { _socket: { pause(): void } })._socket.pause();
    await resumed;
    const drop = statuses.find((s) => s.state === 'reconnecting');
    assert.match(drop?.reason ?? '', /nothing heard from the hub/);
    assert.equal(client.state, 'connected');
    client.close();
  });
});

describe('token expiry (4002, HTTP 401 token_expired)', () => {
  let hub: ProdHub;
  const origin = 'http://app.example.test';
  before(async () => {
    hub = await startProdHub({ EVA_HUB__AUTH__LEEWAY_S: '0', EVA_HUB__AUTH__ALLOWED_ORIGINS: `["${origin}"]` });
  });
  after(async () => {
    await hub?.stop();
  });

  it('a REST call with a wrong key is a typed 401', async () => {
    const rest = new HubRest({ baseUrl: hub.httpUrl, apiKey: 'not-a-key' });
    await assert.rejects(rest.listSessions(), (e: unknown) => e instanceof HubError && e.code === 'unauthorized' && e.status === 401);
  });

  /** A participant token for `sid` that has already expired (the hub checks with no leeway here). */
  async function expiredToken(rest: HubRest, sid: string, subject: string): Promise<string> {
    const issued = await rest.mintToken({ role: 'participant', subject, sessions: [sid], ttl_s: 1 });
    await waitFor(() => Date.now() / 1000 > (issued.expires_at ?? 0) + 0.1, 'the token to expire', 5_000);
    return issued.token;
  }

  it('an expired header token is HTTP 401 token_expired: the token function is asked for a fresh one', async () => {
    const rest = new HubRest({ baseUrl: hub.httpUrl, apiKey: hub.adminKey });
    const sid = (await rest.createSession()).id;
    const stale = await expiredToken(rest, sid, 'stale-header');
    let calls = 0;
    const token = async () => {
      calls++;
      return calls === 1 ? stale : (await rest.mintToken({ role: 'participant', subject: 'stale-header', sessions: [sid] })).token;
    };
    const control = socketControl();
    const client = newClient({ url: hub.wsUrl, token, auth: 'header', WebSocket: control.WebSocket, reconnect: fast });
    const statuses: ConnectionStatus[] = [];
    client.on('connection', (s) => statuses.push(s));
    await client.join(sid).ready;
    assert.equal(calls, 2);
    assert.equal(control.sockets.length, 2);
    const refusal = statuses.find((s) => s.error instanceof HandshakeError)?.error;
    assert.ok(refusal instanceof HandshakeError && refusal.status === 401 && refusal.hubCode === 'token_expired', String(refusal));
    client.close();
  });

  it('an expired string token is final, and says token_expired', async () => {
    const rest = new HubRest({ baseUrl: hub.httpUrl, apiKey: hub.adminKey });
    const sid = (await rest.createSession()).id;
    const control = socketControl();
    const client = newClient({ url: hub.wsUrl, token: await expiredToken(rest, sid, 'stale-string'), WebSocket: control.WebSocket, reconnect: fast });
    await assert.rejects(client.connect(), (e: unknown) => e instanceof HandshakeError && e.status === 401 && e.hubCode === 'token_expired');
    await sleep(200);
    assert.equal(control.sockets.length, 1, 'nothing to refresh it with: no retry');
  });

  it('an invalid token from a token function is final (401 unauthorized), asked for once', async () => {
    let calls = 0;
    const control = socketControl();
    const client = newClient({
      url: hub.wsUrl,
      token: () => {
        calls++;
        return 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.Zm9yZ2Vk';
      },
      WebSocket: control.WebSocket,
      reconnect: fast,
    });
    await assert.rejects(client.connect(), (e: unknown) => e instanceof HandshakeError && e.status === 401 && e.hubCode === 'unauthorized');
    await sleep(200);
    assert.equal(calls, 1);
    assert.equal(control.sockets.length, 1);
  });

  it('a cached token that expired during an outage is replaced on the reconnect, and the session resumes', async () => {
    const rest = new HubRest({ baseUrl: hub.httpUrl, apiKey: hub.adminKey });
    const sid = (await rest.createSession()).id;
    let minted = 0;
    let expiresAt = 0;
    const token = async () => {
      minted++;
      const issued = await rest.mintToken({ role: 'participant', subject: 'outage', sessions: [sid], ttl_s: minted === 1 ? 2 : 60 });
      expiresAt = issued.expires_at ?? 0;
      return issued.token;
    };
    const control = socketControl();
    const client = newClient({ url: hub.wsUrl, token, WebSocket: control.WebSocket, reconnect: fast });
    const statuses: ConnectionStatus[] = [];
    client.on('connection', (s) => statuses.push(s));
    const session = client.join(sid);
    const seen: number[] = [];
    session.onCustom<{ n: number }>('tick', (d) => seen.push(d.n));
    await session.ready;
    control.online = false;
    control.kill();
    await waitFor(() => client.state === 'reconnecting', 'reconnecting');
    await rest.postEvent(sid, { name: 'tick', data: { n: 0 } });
    await waitFor(() => Date.now() / 1000 > expiresAt + 0.1, 'the cached token to expire', 5_000);
    const resumed = next<[ResumedFrame]>((fn) => session.on('resumed', fn));
    control.online = true;
    await resumed;
    assert.equal(minted, 2, 'one fresh token');
    assert.ok(statuses.some((s) => s.error instanceof HandshakeError && s.error.hubCode === 'token_expired'));
    await waitFor(() => seen.length === 1, 'the tick sent during the outage');
    client.close();
  });

  for (const auth of ['header', 'frame'] as const) {
    it(`calls the token provider again and resumes (${auth} auth)`, async () => {
      const rest = new HubRest({ baseUrl: hub.httpUrl, apiKey: hub.adminKey });
      const sid = (await rest.createSession()).id;
      let minted = 0;
      const token = async () => {
        minted++;
        return (await rest.mintToken({ role: 'participant', subject: `expiring-${auth}`, sessions: [sid], ttl_s: 2 })).token;
      };
      const control = socketControl(auth === 'frame' ? { origin } : {});
      const client = newClient({ url: hub.wsUrl, token, auth, WebSocket: control.WebSocket, reconnect: fast });
      const statuses: ConnectionStatus[] = [];
      client.on('connection', (s) => statuses.push(s));
      const session = client.join(sid);
      const seen: number[] = [];
      session.onCustom<{ n: number }>('tick', (d) => seen.push(d.n));
      let snapshots = 0;
      session.on('snapshot', () => snapshots++);
      await session.ready;
      assert.equal(minted, 1);
      const resumed = next<[ResumedFrame]>((fn) => session.on('resumed', fn), 8_000);
      await rest.postEvent(sid, { name: 'tick', data: { n: 0 } });
      await waitFor(() => statuses.some((s) => s.closeCode === 4002), 'close 4002', 8_000);
      await rest.postEvent(sid, { name: 'tick', data: { n: 1 } });
      await resumed;
      assert.ok(minted >= 2, 'a fresh token was fetched');
      await waitFor(() => seen.length === 2, 'both ticks');
      assert.deepEqual(seen, [0, 1]);
      assert.equal(snapshots, 1, 'resumed, not restarted');
      const expired = statuses.find((s) => s.closeCode === 4002);
      assert.equal(expired?.state, 'reconnecting');
      assert.equal(expired?.closeName, 'token_expired');
      client.close();
    });
  }
});
