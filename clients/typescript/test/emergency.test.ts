// Emergency stop against a real hub: the renderer's handler runs once
// (urgent frame and event deduplicated), the SDK acknowledges it, and
// operators see the ack; without a handler nothing is acknowledged and the
// hub's alert reaches operators, who acknowledge it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { HubRest, type CodecName, type EmergencyStop } from '../src/index.js';
import { newClient, sleep, socketControl, startHub, waitFor, type Hub } from './harness.js';

describe('emergency stop', () => {
  let hub: Hub;
  let rest: HubRest;
  before(async () => {
    hub = await startHub({ env: { EVA_HUB__SESSION__EMERGENCY_ACK_TIMEOUT_MS: '300' } });
    rest = new HubRest({ baseUrl: hub.httpUrl });
  });
  after(async () => {
    await hub?.stop();
  });

  async function live(codec: CodecName, renderer: string) {
    const sid = (await rest.createSession()).id;
    const control = socketControl();
    const urgentFrames: unknown[] = [];
    control.drop = (data) => {
      if (typeof data === 'string' && data.includes('"type":"urgent"')) urgentFrames.push(data);
      return false;
    };
    const r = newClient({ url: hub.wsUrl, token: `dev:renderer:${renderer}`, codec, WebSocket: control.WebSocket });
    const o = newClient({ url: hub.wsUrl, token: 'dev:operator:ops-e', codec, WebSocket: socketControl().WebSocket });
    const rs = r.join(sid);
    const os = o.join(sid);
    await Promise.all([rs.ready, os.ready]);
    await rs.setStatus('active');
    await waitFor(() => os.getState().status === 'active', 'active');
    return { r, o, rs, os, urgentFrames };
  }

  for (const codec of ['json', 'msgpack'] as CodecName[]) {
    it(`calls the renderer's handler once and acknowledges it (${codec})`, async () => {
      const t = await live(codec, `engine-${codec}`);
      const stops: EmergencyStop[] = [];
      t.rs.on('emergency', (s) => stops.push(s));
      let events = 0;
      t.rs.on('event:emergency_stop', () => events++);
      const ack = await t.os.emergencyStop('inappropriate output');
      assert.ok(ack.ref_id, 'the intervention id');
      await waitFor(() => t.os.getState().emergencyStop?.acknowledged === true, 'the renderer ack at the operator');
      await waitFor(() => events === 1, 'the in-order event at the renderer');
      await sleep(50);
      assert.equal(stops.length, 1, 'handler called once');
      assert.equal(stops[0]?.interventionId, ack.ref_id);
      assert.equal(stops[0]?.reason, 'inappropriate output');
      if (codec === 'json') assert.equal(t.urgentFrames.length, 1, 'the urgent frame came too');
      const op = t.os.getState();
      assert.equal(op.emergencyStop?.interventionId, ack.ref_id);
      assert.equal(op.emergencyStop?.operatorId, 'ops-e');
      await waitFor(() => t.os.getState().status === 'paused', 'paused');
      await sleep(400);
      assert.equal(t.os.getState().alerts.length, 0, 'acknowledged in time: no alert');
      t.r.close();
      t.o.close();
    });
  }

  it('without a handler nothing is acknowledged; the alert reaches operators', async () => {
    const t = await live('json', 'engine-deaf');
    const ack = await t.os.emergencyStop('no one listens');
    await waitFor(() => t.os.getState().alerts.some((a) => a.alert_type === 'emergency_stop_unacknowledged'), 'the unacknowledged alert');
    assert.equal(t.os.getState().emergencyStop?.acknowledged, false);
    assert.equal(t.os.getState().emergencyStop?.interventionId, ack.ref_id);
    const alert = t.os.getState().alerts.find((a) => a.alert_type === 'emergency_stop_unacknowledged');
    assert.ok(alert);
    await t.os.ackAlert(alert.alert_id);
    await waitFor(() => t.os.getState().alerts.length === 0, 'alert acknowledged');
    // The app can still acknowledge the stop itself.
    t.rs.ackCommand(ack.ref_id as string);
    await waitFor(() => t.os.getState().emergencyStop?.acknowledged === true, 'late ack');
    t.r.close();
    t.o.close();
  });
});
