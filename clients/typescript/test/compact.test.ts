// Compact event frames and `echo: false` against a real hub, in both
// codecs: a session joined with `compact` gets the same events and state
// as one joined without (only the frame's `ts` is missing), across a
// killed socket and its resume and for several sessions on one connection;
// `echo: false` leaves out the events published under the connection's
// own role and subject, never their acks.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decode } from '@msgpack/msgpack';
import WebSocket from 'ws';
import { HubRest, type CodecName, type EvaClient, type Event, type EventFrame, type Session, type SessionView } from '../src/index.js';
import { newClient, next, sleep, socketControl, startHub, waitFor, type Hub, type SocketControl } from './harness.js';

const fast = { minDelayMs: 20, maxDelayMs: 100 };
const WS = WebSocket as unknown as import('../src/index.js').WebSocketConstructor;

type Frame = Record<string, unknown>;

/** A client whose every incoming frame is recorded (decoded) before the SDK sees it. */
function recorded(hub: Hub, token: string, codec: CodecName, extra: { compact?: boolean; echo?: boolean } = {}) {
  const control: SocketControl = socketControl();
  const wire: Frame[] = [];
  control.drop = (data) => {
    wire.push((typeof data === 'string' ? JSON.parse(data) : decode(data as Uint8Array)) as Frame);
    return false;
  };
  const client = newClient({ url: hub.wsUrl, token, codec, WebSocket: control.WebSocket, reconnect: fast, ...extra });
  return { client, control, wire };
}

/** Every event a session hands to its handlers, with its frame. */
function events(session: Session): { event: Event; frame: EventFrame }[] {
  const got: { event: Event; frame: EventFrame }[] = [];
  session.on('event', (frame) => got.push({ event: frame.event, frame }));
  return got;
}

const compactFrames = (wire: Frame[]) => wire.filter((f) => !('type' in f));
const ofType = (wire: Frame[], type: string) => wire.filter((f) => f.type === type);

/** The store's state without the times a compact session takes from this client's clock. */
function timeless(s: SessionView): unknown {
  return {
    ...s,
    conversation: s.conversation.map(({ ts: _ts, ...line }) => line),
    openQuestions: s.openQuestions.map(({ asked_at: _at, ...q }) => q),
    pendingCommands: s.pendingCommands.map(({ issued_at: _at, ...c }) => c),
  };
}

let hub: Hub;
let rest: HubRest;
before(async () => {
  hub = await startHub({ env: { EVA_HUB__SESSION__COUNTERS_INTERVAL_MS: '20' } });
  rest = new HubRest({ baseUrl: hub.httpUrl });
});
after(async () => {
  await hub?.stop();
});

/** Events of many kinds in one session: state, context, custom to all and to staff, a question and its answer, a takeover with a suggestion and a command, the release. */
async function drive(sid: string, codec: CodecName, clients: EvaClient[]): Promise<void> {
  const mk = (token: string) => {
    const c = newClient({ url: hub.wsUrl, token, codec, WebSocket: WS, reconnect: fast });
    clients.push(c);
    return c;
  };
  const r = mk('dev:renderer:avatar-1').join(sid);
  await r.ready;
  await r.setStatus('active');
  await r.setState({ current_slide: 3, is_speaking: true, current_topic: 'pricing' });
  await r.setContext({ recent_questions: [] });
  await r.publish('job.progress', { progress: 40 });
  await r.publish('job.secret', { n: 1 }, { audience: 'staff' });
  const p = mk(`dev:participant:alice-${codec}`).join(sid, { name: 'Alice' });
  await p.ready;
  const q = await p.ask('What does it cost?');
  await r.respond({ text: 'Free for a month.', question_id: q.ref_id ?? null, confidence: 0.9, response_time_ms: 120 });
  const op = mk('dev:operator:ops-2').join(sid);
  await op.ready;
  await op.takeover('checking');
  await op.suggest('Mention the tiers.');
  await op.command({ action: 'goto_slide', slide: 7 });
  await op.release();
}

for (const codec of ['json', 'msgpack'] as CodecName[]) {
  describe(`compact event frames (${codec})`, () => {
    it('give the same events and state as full frames, for several sessions on one connection', async () => {
      const others: EvaClient[] = [];
      const s1 = (await rest.createSession({ name: 'compact one' })).id;
      const s2 = (await rest.createSession({ name: 'compact two' })).id;
      const full = recorded(hub, `dev:operator:full-${codec}`, codec);
      const compact = recorded(hub, `dev:operator:compact-${codec}`, codec, { compact: true });
      const sessions = { full: [full.client.join(s1), full.client.join(s2)], compact: [compact.client.join(s1), compact.client.join(s2)] };
      await Promise.all([...sessions.full, ...sessions.compact].map((s) => s.ready));
      // Compared from here on (whichever joined first saw the other join).
      const start = [0, 1].map((i) => Math.max(sessions.compact[i]!.position?.seq ?? 0, sessions.full[i]!.position?.seq ?? 0));
      const got = { full: sessions.full.map(events), compact: sessions.compact.map(events) };

      await drive(s1, codec, others);
      await drive(s2, codec, others);
      for (const i of [0, 1]) {
        await waitFor(() => sessions.full[i]!.position?.seq === sessions.compact[i]!.position?.seq, 'both caught up');
      }
      await sleep(100);
      for (const i of [0, 1]) {
        const fullEvents = got.full[i]!.filter((g) => g.frame.seq > start[i]!);
        const compactEvents = got.compact[i]!.filter((g) => g.frame.seq > start[i]!);
        assert.ok(fullEvents.length > 15, `${fullEvents.length} events`);
        assert.deepEqual(
          compactEvents.map((g) => [g.frame.seq, g.frame.session, g.event]),
          fullEvents.map((g) => [g.frame.seq, g.frame.session, g.event]),
          'the same events, seq for seq, field for field',
        );
        const kinds = new Set(fullEvents.map((g) => g.event.kind));
        for (const k of ['state', 'context', 'custom', 'question', 'response', 'takeover', 'suggestion', 'command'] as const) {
          assert.ok(kinds.has(k), `a ${k} event`);
        }
        assert.ok(compactEvents.every((g) => g.frame.ts === undefined && g.frame.type === 'event'), 'compact: event frames without ts');
        assert.ok(fullEvents.every((g) => typeof g.frame.ts === 'number'), 'full: event frames with ts');
        assert.deepEqual(timeless(sessions.compact[i]!.getState()), timeless(sessions.full[i]!.getState()), 'the same state');
        assert.ok(sessions.compact[i]!.getState().conversation.every((l) => typeof l.ts === 'number'), 'conversation lines have a time');
      }
      // The custom event to all carries no audience; the one to staff does.
      const customs = got.compact[0]!.flatMap((g) => (g.event.kind === 'custom' ? [[g.event.name, g.event.audience]] : []));
      assert.deepEqual(customs, [
        ['job.progress', undefined],
        ['job.secret', 'staff'],
      ]);
      // On the wire: no event frames for the compact client, one alias per session.
      assert.equal(ofType(compact.wire, 'event').length, 0);
      assert.ok(compactFrames(compact.wire).every((f) => !('ts' in f) && !('session' in f)));
      const aliases = new Map(ofType(compact.wire, 'joined').map((f) => [f.session, f.alias]));
      assert.equal(aliases.size, 2);
      assert.equal(new Set(aliases.values()).size, 2, 'a different alias per session');
      [s1, s2].forEach((sid, i) => {
        const frames = compactFrames(compact.wire).filter((f) => f.e === aliases.get(sid) && (f.q as number) > start[i]!);
        assert.deepEqual(
          frames.map((f) => f.q),
          got.compact[i]!.filter((g) => g.frame.seq > start[i]!).map((g) => g.frame.seq),
          'each compact frame became one event of its session',
        );
      });
      assert.equal(compactFrames(full.wire).length, 0);
      assert.ok(ofType(full.wire, 'joined').every((f) => f.alias === undefined || f.alias === null));
      for (const c of [...others, full.client, compact.client]) c.close();
    });

    it('resume after a killed socket: nothing lost or repeated, aliases from each joined', async () => {
      const sid = (await rest.createSession()).id;
      const p = recorded(hub, `dev:participant:compact-resume-${codec}`, codec, { compact: true });
      const session = p.client.join(sid);
      const seen: number[] = [];
      session.onCustom<{ n: number }>('tick', (d) => seen.push(d.n));
      let snapshots = 0;
      session.on('snapshot', () => snapshots++);
      await session.ready;
      const post = async (from: number, to: number) => {
        for (let n = from; n < to; n++) await rest.postEvent(sid, { name: 'tick', data: { n } });
      };
      await post(0, 10);
      await waitFor(() => seen.length === 10, 'the first ten ticks');
      for (const round of [1, 2]) {
        p.control.online = false;
        p.control.kill();
        await waitFor(() => p.client.state === 'reconnecting', 'reconnecting');
        await post(round * 10, round * 10 + 10); // missed while offline
        const resumed = next((fn) => session.on('resumed', fn));
        p.control.online = true;
        await resumed;
        await waitFor(() => seen.length === round * 10 + 10, `the ticks missed in round ${round}`);
      }
      await post(30, 40);
      await waitFor(() => seen.length >= 40, 'live ticks after the resumes');
      await sleep(50);
      assert.deepEqual(seen, Array.from({ length: 40 }, (_, i) => i), 'every event once, in order');
      assert.equal(snapshots, 1, 'the resumes were exact');
      const joined = ofType(p.wire, 'joined');
      assert.equal(joined.length, 3);
      assert.ok(joined.every((f) => typeof f.alias === 'number'));
      assert.equal(ofType(p.wire, 'event').length, 0, 'replays come compact too');
      assert.ok(compactFrames(p.wire).every((f) => f.e === joined.at(-1)!.alias || joined.some((j) => j.alias === f.e)));
      assert.equal(session.position?.seq, Math.max(...compactFrames(p.wire).map((f) => f.q as number)));
      p.client.close();
    });

    it('echo: false leaves out only the own events, and still acks them', async () => {
      const sid = (await rest.createSession()).id;
      const r = newClient({ url: hub.wsUrl, token: 'dev:renderer:avatar-echo', codec, WebSocket: WS, reconnect: fast, compact: true, echo: false });
      const renderer = r.join(sid);
      const mine = events(renderer);
      const op = newClient({ url: hub.wsUrl, token: 'dev:operator:ops-echo', codec, WebSocket: WS, reconnect: fast });
      const operator = op.join(sid);
      const theirs = events(operator);
      const pc = newClient({ url: hub.wsUrl, token: `dev:participant:bob-${codec}`, codec, WebSocket: WS, reconnect: fast });
      const participant = pc.join(sid);
      await Promise.all([renderer.ready, operator.ready, participant.ready]);

      const acks = [await renderer.setState({ current_slide: 2 }), await renderer.publish('job.progress', { progress: 1 }), await renderer.publish('job.progress', { progress: 2 })];
      assert.ok(acks.every((a) => typeof a.seq === 'number'), 'frames are still acked');
      const q = await participant.ask('Still there?');
      await operator.suggest('Say hello.');
      await waitFor(() => mine.some((g) => g.event.kind === 'question') && mine.some((g) => g.event.kind === 'suggestion'), "the others' events");
      const own = new Set(acks.map((a) => a.seq));
      assert.ok(!mine.some((g) => own.has(g.frame.seq)), 'none of its own events');
      assert.ok(!mine.some((g) => g.event.kind === 'custom'));
      assert.ok(!mine.some((g) => g.event.kind === 'state' && g.event.state.current_slide === 2));
      assert.ok(mine.some((g) => g.event.kind === 'question' && g.event.question_id === q.ref_id));
      await waitFor(() => [...own].every((s) => theirs.some((g) => g.frame.seq === s)), 'the operator gets them all');

      // After a reconnect the resume leaves them out as well.
      const resumed = next((fn) => renderer.on('resumed', fn));
      r.reconnect();
      await resumed;
      await renderer.publish('job.progress', { progress: 3 });
      await operator.suggest('Again.');
      await waitFor(() => mine.filter((g) => g.event.kind === 'suggestion').length === 2, 'the second suggestion');
      assert.ok(!mine.some((g) => g.event.kind === 'custom'));
      for (const c of [r, op, pc]) c.close();
    });
  });
}
