// Every role against a real hub, in both codecs: renderer, operator and
// participant on one session, each frame they send, what each sees, and
// the state store folding it all.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { HubError, HubRest, type EvaClient, type CodecName, type EventFrame, type Session } from '../src/index.js';
import { newClient, next, startHub, waitFor, type Hub } from './harness.js';

const WS = WebSocket as unknown as import('../src/index.js').WebSocketConstructor;

let hub: Hub;
before(async () => {
  hub = await startHub({ env: { EVA_HUB__SESSION__METRICS_INTERVAL_MS: '50', EVA_HUB__SESSION__COUNTERS_INTERVAL_MS: '50' } });
});
after(async () => {
  await hub?.stop();
});

for (const codec of ['json', 'msgpack'] as CodecName[]) {
  describe(`three roles over ${codec}`, () => {
    const clients: EvaClient[] = [];
    const client = (token: string) => {
      const c = newClient({ url: hub.wsUrl, token, codec, WebSocket: WS });
      clients.push(c);
      return c;
    };
    let sessionId: string;
    let renderer: Session;
    let operator: Session;
    let participant: Session;

    before(async () => {
      const rest = new HubRest({ baseUrl: hub.httpUrl });
      sessionId = (await rest.createSession({ name: `roles ${codec}` })).id;
      renderer = client('dev:renderer:engine-1').join(sessionId);
      operator = client('dev:operator:ops-1').join(sessionId);
      participant = client(`dev:participant:alice-${codec}`).join(sessionId, { name: 'Alice' });
      await Promise.all([renderer.ready, operator.ready, participant.ready]);
    });
    after(() => {
      for (const c of clients) c.close();
    });

    it('lists the tenant sessions for operators only', async () => {
      const listed = await clients[1]!.listSessions();
      const line = listed.find((l) => l.session === sessionId);
      assert.ok(line, 'the session is listed');
      assert.equal(line.name, `roles ${codec}`);
      assert.equal(line.renderer_connected, true);
      await assert.rejects(clients[2]!.listSessions(), (e: unknown) => e instanceof HubError && e.code === 'forbidden');
    });

    it('joins each role with a snapshot of its view', () => {
      const p = participant.getState();
      assert.equal(p.ready, true);
      assert.equal(p.name, `roles ${codec}`);
      assert.equal(p.members, null, 'participants see no member list');
      assert.equal(p.control, null, 'participants see no control');
      const o = operator.getState();
      assert.ok(o.control, 'operators see control');
      assert.equal(o.control.renderer_connected, true);
      assert.ok(Array.isArray(o.members));
      assert.equal(clients[0]?.welcome?.role, 'renderer');
      assert.equal(clients[1]?.welcome?.role, 'operator');
      assert.equal(clients[2]?.welcome?.role, 'participant');
      assert.equal(clients[0]?.state, 'connected');
    });

    it('folds presence: the operator sees the participant join', async () => {
      await waitFor(() => (operator.getState().members ?? []).some((m) => m.id === `alice-${codec}`), 'presence');
      const alice = operator.getState().members?.find((m) => m.id === `alice-${codec}`);
      assert.equal(alice?.name, 'Alice');
      assert.ok(operator.getState().participantCount >= 1);
    });

    it('renderer status and state reach everyone, acked', async () => {
      const ack1 = await renderer.setStatus('active');
      assert.equal(ack1.type, 'ack');
      const before = participant.getState();
      const ack2 = await renderer.setState({ current_slide: 5, is_speaking: true, current_topic: 'pricing', presentation_mode: 'auto' });
      assert.ok(typeof ack2.seq === 'number' && ack2.seq > 0);
      await waitFor(() => participant.getState().state.current_slide === 5, 'slide 5 at the participant');
      const after = participant.getState();
      assert.notEqual(after, before, 'a change gives a new state object');
      assert.equal(before.state.current_slide, 0, 'the old state object is unchanged');
      assert.equal(after.status, 'active');
      assert.equal(after.state.is_speaking, true);
      assert.equal(after.state.current_topic, 'pricing');
      assert.equal(after.state.presentation_mode, 'auto');
      await waitFor(() => operator.getState().state.current_slide === 5, 'slide 5 at the operator');
      assert.equal(participant.getState(), participant.getState(), 'unchanged state keeps its identity');
    });

    let questionId: string;
    it('a participant question is acked with its id and reaches the renderer', async () => {
      const seen = next<[unknown, EventFrame]>((fn) => renderer.on('event:question', fn));
      const ack = await participant.ask('What does it cost?');
      assert.ok(ack.ref_id, 'ack.ref_id is the question id');
      questionId = ack.ref_id;
      const [q] = (await seen) as [{ question_id: string; text: string; participant_name?: string | null }, EventFrame];
      assert.equal(q.question_id, questionId);
      assert.equal(q.text, 'What does it cost?');
      assert.equal(q.participant_name, 'Alice');
      await waitFor(() => renderer.getState().openQuestions.length === 1, 'open question');
      await waitFor(() => operator.getState().openQuestions.some((x) => x.question_id === questionId), 'operator open question');
    });

    let responseId: string;
    it('a renderer response answers it for everyone', async () => {
      const seen = next<[{ response_id: string; text: string }, EventFrame]>((fn) => participant.on('event:response', fn));
      const ack = await renderer.respond({ question_id: questionId, text: 'It is free for a month.', confidence: 0.92, response_time_ms: 840, intent: 'pricing' });
      assert.ok(ack.ref_id);
      responseId = ack.ref_id;
      const [r] = await seen;
      assert.equal(r.response_id, responseId);
      await waitFor(() => renderer.getState().openQuestions.length === 0, 'question answered at the renderer');
      const lines = participant.getState().conversation;
      assert.equal(lines.at(-1)?.kind, 'response');
      assert.equal(lines.at(-1)?.questionId, questionId);
      const opLines = operator.getState().conversation.map((l) => l.kind);
      await waitFor(() => operator.getState().conversation.some((l) => l.kind === 'response'), 'operator conversation');
      assert.ok(opLines.includes('question'));
    });

    it('takeover holds the renderer response until the operator approves it', async () => {
      await operator.takeover('checking answers');
      await waitFor(() => operator.getState().control?.controller === 'ops-1', 'controller');
      let participantResponses = 0;
      const off = participant.on('event:response', () => participantResponses++);
      const held = await renderer.respond({ text: 'An unreviewed answer.', confidence: 0.5, response_time_ms: 100 });
      assert.ok(held.ref_id);
      await waitFor(() => operator.getState().heldResponses.some((h) => h.response_id === held.ref_id), 'held response');
      assert.equal(participantResponses, 0, 'held responses do not reach participants');
      await operator.approve(held.ref_id);
      await waitFor(() => participantResponses === 1, 'approved response at the participant');
      await waitFor(() => operator.getState().heldResponses.length === 0, 'held list emptied by approval');
      off();
    });

    it('commands reach the renderer; its command_ack reaches operators', async () => {
      const cmd = next<[{ command_id: string; command: { action: string } }, EventFrame]>((fn) => renderer.on('event:command', fn));
      const ack = await operator.command({ action: 'goto_slide', slide: 12 });
      const [c] = await cmd;
      assert.equal(c.command_id, ack.ref_id);
      assert.equal(c.command.action, 'goto_slide');
      const acked = next<[{ command_id: string }, EventFrame]>((fn) => operator.on('event:command_ack', fn));
      renderer.ackCommand(c.command_id);
      const [a] = await acked;
      assert.equal(a.command_id, c.command_id);
    });

    it('a second operator conflicts; release ends the takeover', async () => {
      const other = client('dev:operator:ops-2').join(sessionId);
      await other.ready;
      await assert.rejects(other.takeover(), (e: unknown) => e instanceof HubError && e.code === 'conflict' && !e.retryable);
      await operator.release();
      await waitFor(() => other.getState().control?.controller === null, 'released');
      await other.leave();
      assert.equal(other.joined, false);
    });

    it('suggestions reach the renderer, corrections reach participants', async () => {
      const sug = next<[{ text: string }, EventFrame]>((fn) => renderer.on('event:suggestion', fn));
      await operator.suggest('Mention the pricing tiers.');
      assert.equal((await sug)[0].text, 'Mention the pricing tiers.');
      const cor = next<[{ response_id: string; text: string }, EventFrame]>((fn) => participant.on('event:correction', fn));
      await operator.correct(responseId, 'Actually, 30 days.');
      const [c] = await cor;
      assert.equal(c.response_id, responseId);
      await waitFor(() => participant.getState().conversation.some((l) => l.kind === 'correction' && l.responseId === responseId), 'correction line');
    });

    it('app-defined events reach their audience', async () => {
      const got = next<[{ progress: number }, EventFrame]>((fn) => participant.onCustom<{ progress: number }>('job.progress', fn));
      let rendererSawStaff = false;
      const off = renderer.onCustom('ops.note', () => (rendererSawStaff = true));
      let participantSawStaff = false;
      const off2 = participant.onCustom('ops.note', () => (participantSawStaff = true));
      await renderer.publish('job.progress', { job_id: 'job_1', progress: 40 });
      assert.equal((await got)[0].progress, 40);
      await operator.publish('ops.note', { n: 1 }, { audience: 'staff' });
      await waitFor(() => rendererSawStaff, 'staff event at the renderer');
      // The participant's view skips it; a later `all` event proves it had its chance.
      const later = next<[unknown, EventFrame]>((fn) => participant.onCustom('job.progress', fn));
      await renderer.publish('job.progress', { progress: 50 });
      await later;
      assert.equal(participantSawStaff, false);
      off();
      off2();
    });

    it('metrics reach operators (conflated), not participants', async () => {
      assert.equal(renderer.reportMetrics({ latency_ms: 234, cpu_usage: 0.5, fps: 30 }), true);
      await waitFor(() => operator.getState().metrics?.latency_ms === 234, 'metrics at the operator');
      assert.equal(participant.getState().metrics, null);
    });

    it('a refused frame rejects its promise with a typed error', async () => {
      await assert.rejects(participant.publish('nope', {}), (e: unknown) => e instanceof HubError && e.code === 'forbidden');
      await assert.rejects(renderer.setState({ current_slide: -1 }), (e: unknown) => e instanceof HubError && e.code === 'invalid');
      assert.equal(clients[2]?.pendingCount, 0);
    });

    it('store listeners get one notification per burst, with the latest state', async () => {
      const states: number[] = [];
      const off = participant.subscribe((s) => states.push(s.state.current_slide));
      await Promise.all([renderer.setState({ current_slide: 20 }), renderer.setState({ current_slide: 21 }), renderer.setState({ current_slide: 22 })]);
      await waitFor(() => participant.getState().state.current_slide === 22, 'slide 22');
      await new Promise((r) => setTimeout(r, 20));
      off();
      assert.equal(states.at(-1), 22);
      assert.ok(states.length >= 1 && states.length <= 3);
      assert.deepEqual([...states].sort((a, b) => a - b), states, 'notifications in order');
    });
  });
}
