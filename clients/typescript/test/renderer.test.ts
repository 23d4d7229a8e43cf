// A renderer coming back: after a network partition (its old socket
// half-open, still the live renderer for the hub) it rejoins at once,
// replacing its own stale connection; after an outage long enough for a
// discontinuity it acts on the snapshot's open questions and pending
// commands, the emergency stop among them first.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  HubRest,
  type DiscontinuityFrame,
  type EmergencyStop,
  type EvaError,
  type JoinedFrame,
  type ResumedFrame,
  type SnapshotFrame,
} from '../src/index.js';
import { newClient, next, socketControl, startHub, startRelay, waitFor, type Hub, type Relay } from './harness.js';

const fast = { minDelayMs: 20, maxDelayMs: 100 };

describe('renderer after a network partition', () => {
  let hub: Hub;
  let relay: Relay;
  before(async () => {
    hub = await startHub();
    relay = await startRelay(hub.listen);
  });
  after(async () => {
    await relay?.close();
    await hub?.stop();
  });

  it('rejoins at once under its own subject, with a new fence, and resumes what it missed', async () => {
    const rest = new HubRest({ baseUrl: hub.httpUrl });
    const sid = (await rest.createSession()).id;
    const r = newClient({ url: relay.wsUrl, token: 'dev:renderer:partitioned', WebSocket: socketControl().WebSocket, reconnect: fast, heartbeatMs: 150 });
    const rs = r.join(sid);
    const problems: (EvaError | null)[] = [];
    rs.on('error', (e) => problems.push(e));
    rs.on('left', (e) => problems.push(e));
    const firstJoin = next<[JoinedFrame]>((fn) => rs.on('joined', fn));
    await rs.ready;
    const [{ fence }] = await firstJoin;
    await rs.setStatus('active');
    const participant = newClient({ url: hub.wsUrl, token: 'dev:participant:asker', WebSocket: socketControl().WebSocket });
    await participant.join(sid, { name: 'Asker' }).ready;
    const questions: string[] = [];
    rs.on('event:question', (q) => questions.push(q.text));

    relay.freeze();
    // Asked while the hub still writes to the frozen connection.
    await participant.session(sid)?.ask('anyone there?');
    const rejoined = next<[JoinedFrame]>((fn) => rs.on('joined', fn), 10_000);
    const resumed = next<[ResumedFrame]>((fn) => rs.on('resumed', fn), 10_000);
    const [again] = await rejoined;
    await resumed;
    assert.ok((again.fence ?? 0) > (fence ?? 0), `a new fence: ${again.fence} after ${fence}`);
    await waitFor(() => questions.includes('anyone there?'), 'the question asked during the partition');
    await rs.setState({ current_slide: 2 }); // the new connection is the renderer
    assert.deepEqual(problems, [], 'no renderer_active, no 4504 for the new connection');
    assert.equal(r.state, 'connected');
    r.close();
    participant.close();
  });
});

describe('renderer after a discontinuity', () => {
  let hub: Hub;
  before(async () => {
    hub = await startHub({ env: { EVA_HUB__SESSION__HISTORY_SIZE: '8' } });
  });
  after(async () => {
    await hub?.stop();
  });

  it('handles the emergency stop first, then answers the open question and carries out the pending command', async () => {
    const rest = new HubRest({ baseUrl: hub.httpUrl });
    const sid = (await rest.createSession()).id;
    const control = socketControl();
    const r = newClient({ url: hub.wsUrl, token: 'dev:renderer:returning', WebSocket: control.WebSocket, reconnect: fast });
    const rs = r.join(sid);
    const log: string[] = [];
    const stops: EmergencyStop[] = [];
    rs.on('emergency', (s) => {
      stops.push(s);
      log.push(`stop ${s.reason}`);
    });
    rs.on('snapshot', (f: SnapshotFrame) => {
      for (const q of f.questions ?? []) {
        log.push(`question ${q.text}`);
        void rs.respond({ question_id: q.question_id, text: `answer: ${q.text}`, confidence: 1, response_time_ms: Date.now() - q.asked_at });
      }
      for (const c of f.pending_commands ?? []) {
        if (c.emergency) continue; // the `emergency` handler had it
        log.push(`command ${c.command?.action}`);
        rs.ackCommand(c.command_id);
      }
    });
    await rs.ready;
    await rs.setStatus('active');

    const o = newClient({ url: hub.wsUrl, token: 'dev:operator:ops-gap', WebSocket: socketControl().WebSocket });
    const os = o.join(sid);
    const p = newClient({ url: hub.wsUrl, token: 'dev:participant:gap', WebSocket: socketControl().WebSocket });
    const ps = p.join(sid, { name: 'Gap' });
    await Promise.all([os.ready, ps.ready]);

    control.online = false;
    control.kill();
    await waitFor(() => r.state === 'reconnecting', 'the renderer offline');
    const question = await ps.ask('what did I miss?');
    await os.takeover('while the renderer is away');
    const command = await os.command({ action: 'goto_slide', slide: 3 });
    const stop = await os.emergencyStop('halt');
    for (let n = 0; n < 12; n++) await rest.postEvent(sid, { name: 'tick', data: { n } });
    await waitFor(() => os.getState().pendingCommands.length === 2, 'both pending at the operator');
    assert.deepEqual(
      os.getState().openQuestions.map((q) => q.question_id),
      [question.ref_id],
    );

    const disc = next<[DiscontinuityFrame]>((fn) => rs.on('discontinuity', fn));
    control.online = true;
    const [d] = await disc;
    assert.equal(d.reason, 'history_trimmed');
    await waitFor(() => os.getState().pendingCommands.length === 0, 'both acknowledged (command_ack events at the operator)');
    // Taken over: the answer is held for the operator, and answers the question.
    await waitFor(() => os.getState().heldResponses.some((h) => h.question_id === question.ref_id), 'the held answer');
    await waitFor(() => os.getState().openQuestions.length === 0, 'the question answered');
    assert.deepEqual(log, ['stop halt', 'question what did I miss?', 'command goto_slide']);
    assert.equal(stops.length, 1);
    assert.equal(stops[0]?.interventionId, stop.ref_id);
    assert.equal(stops[0]?.operatorId, 'ops-gap');
    // The answer's ack may reach the renderer after the operator saw the held response.
    await waitFor(() => rs.getState().openQuestions.length === 0, "answered in the renderer's own view");
    assert.deepEqual(rs.getState().pendingCommands, [], "the renderer's own view: acknowledged");
    assert.ok(command.ref_id);
    r.close();
    o.close();
    p.close();
  });
});
