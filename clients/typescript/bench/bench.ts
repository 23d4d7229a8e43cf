// Throughput of the client's receive path: decode + dispatch of event
// frames (codec, routing to the session, seq check, store fold, handlers),
// on one core. Not a test: it prints events/s, for full `event` frames
// and for compact event frames (`{e, q, ...event}`, a join with
// `compact: true`).
//
//   npm run bench
//
// The frames come from an in-process WebSocket stand-in, pre-encoded, so
// the number is the SDK's own cost, not the hub's or the network's. They
// arrive in batches of 64 per macrotask, like messages read from one TCP
// chunk, so store notifications batch per microtask as they would live.
import { Encoder } from '@msgpack/msgpack';
import { EvaClient, type CodecName, type WebSocketConstructor, type WebSocketLike } from '../src/index.js';

const SESSION = '0192f5c0-7d3e-7b1a-9c4e-2f6a8d1b3c5e';
const EPOCH = '9f3a2c0d11e4b567';
const EVENTS = 300_000;
const BATCH = 64;

/** A 128-byte app-defined event (job progress) or a full state event, alternating. */
function eventFrame(seq: number): unknown {
  const event =
    seq % 2 === 0
      ? {
          kind: 'custom',
          name: 'job.progress',
          data: { job_id: `job_voice_${(seq % 100000).toString().padStart(6, '0')}`, progress: seq % 100, stage: 'tts', eta_ms: 1200 },
          from: 'engine-1',
        }
      : {
          kind: 'state',
          state: {
            current_slide: seq % 40,
            presentation_mode: 'auto',
            is_speaking: seq % 3 === 0,
            awaiting_questions: false,
            operator_connected: true,
            current_topic: 'pricing',
            last_interaction: 1732290000123,
          },
        };
  return { type: 'event', session: SESSION, seq, ts: 1732290000000 + seq, event };
}

/** The same event as a compact event frame (the session's alias is 1). */
function compactFrame(seq: number): unknown {
  const { seq: q, event } = eventFrame(seq) as { seq: number; event: Record<string, unknown> };
  return { e: 1, q, ...event };
}

const snapshot = {
  type: 'snapshot',
  session: SESSION,
  epoch: EPOCH,
  seq: 1,
  status: 'active',
  name: 'bench',
  state: {
    current_slide: 0,
    presentation_mode: 'auto',
    is_speaking: false,
    awaiting_questions: false,
    operator_connected: true,
    current_topic: null,
    last_interaction: 0,
  },
  counters: { participant_count: 1, questions_received: 0, operator_interventions: 0, error_count: 0 },
  presence: { participant_count: 1 },
};
const welcome = {
  type: 'welcome',
  protocol: 'eva.v1',
  conn_id: 1,
  role: 'participant',
  subject: 'bench',
  tenant: '00000000-0000-0000-0000-000000000de7',
  server_time: 1732290000000,
  heartbeat_ms: 0,
  max_message_bytes: 65536,
};

type Wire = string | ArrayBuffer;

function encoderFor(codec: CodecName): (frame: unknown) => Wire {
  if (codec === 'json') return (f) => JSON.stringify(f);
  const enc = new Encoder();
  return (f) => enc.encode(f).slice().buffer;
}

/** The stand-in socket: answers auth and join like the hub, then lets the bench push frames. */
interface Deliverer {
  deliver(data: Wire): void;
}

function fakeSocket(encode: (f: unknown) => Wire, compact: boolean): { ctor: WebSocketConstructor; socket: () => Deliverer } {
  let last: Deliverer | undefined;
  class FakeSocket implements WebSocketLike {
    readyState = 1;
    protocol = '';
    binaryType = 'arraybuffer';
    onopen: ((ev: never) => void) | null = null;
    onmessage: ((ev: never) => void) | null = null;
    onerror: ((ev: never) => void) | null = null;
    onclose: ((ev: never) => void) | null = null;
    constructor() {
      last = this;
      setTimeout(() => {
        (this.onopen as ((ev: unknown) => void) | null)?.({});
        this.deliver(encode(welcome));
      }, 0);
    }
    send(data: string | Uint8Array): void {
      if (typeof data === 'string' ? data.includes('"join"') : true) {
        // The only frames sent in this bench are auth and join.
        setTimeout(() => {
          this.deliver(encode({ type: 'joined', session: SESSION, role: 'participant', ...(compact ? { alias: 1 } : {}) }));
          this.deliver(encode(snapshot));
        }, 0);
      }
    }
    close(): void {
      this.readyState = 3;
    }
    deliver(data: Wire): void {
      (this.onmessage as ((ev: { data: Wire }) => void) | null)?.({ data });
    }
  }
  return { ctor: FakeSocket as unknown as WebSocketConstructor, socket: () => last as Deliverer };
}

interface Rate {
  /** Events per second of this process's CPU time (user + system): the cost on one core, whatever else the machine runs. */
  cpu: number;
  /** Events per second of wall-clock time. */
  wall: number;
}

function encodeAll(codec: CodecName, compact: boolean): Wire[] {
  const encode = encoderFor(codec);
  const frames: Wire[] = new Array<Wire>(EVENTS);
  for (let i = 0; i < EVENTS; i++) frames[i] = encode(compact ? compactFrame(i + 2) : eventFrame(i + 2));
  return frames;
}

function bytes(w: Wire): number {
  return typeof w === 'string' ? Buffer.byteLength(w) : w.byteLength;
}

async function run(codec: CodecName, frames: readonly Wire[], subscribed: boolean, compact: boolean): Promise<Rate> {
  const encode = encoderFor(codec);
  // Start from a collected heap (when run with --expose-gc), so one run's
  // garbage is not billed to the next.
  (globalThis as { gc?: () => void }).gc?.();
  const fake = fakeSocket(encode, compact);
  const client = new EvaClient({ url: 'ws://bench.invalid/v1/ws', token: 'dev:participant:bench', codec, WebSocket: fake.ctor, auth: 'frame', compact });
  const session = client.join(SESSION);
  await session.ready;
  let handled = 0;
  session.onCustom('job.progress', () => handled++);
  session.on('event:state', () => handled++);
  let notifications = 0;
  if (subscribed) session.subscribe(() => notifications++);
  const socket = fake.socket();
  const start = process.hrtime.bigint();
  const cpuStart = process.cpuUsage();
  await new Promise<void>((resolve) => {
    let i = 0;
    const step = () => {
      const end = Math.min(i + BATCH, EVENTS);
      for (; i < end; i++) socket.deliver(frames[i] as Wire);
      if (i < EVENTS) setImmediate(step);
      else setImmediate(resolve);
    };
    step();
  });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpuStart);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  client.close();
  if (handled !== EVENTS) throw new Error(`dispatched ${handled} of ${EVENTS}`);
  if (subscribed && notifications === 0) throw new Error('no store notification');
  return { cpu: EVENTS / cpuSeconds, wall: EVENTS / seconds };
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US').padStart(9);

const results: string[] = [];
const only = process.argv[2]; // `full` or `compact`: one form only
for (const codec of ['msgpack', 'json'] as CodecName[]) {
  for (const compact of [false, true]) {
    if (only !== undefined && only !== (compact ? 'compact' : 'full')) continue;
    const frames = encodeAll(codec, compact);
    const perFrame = Math.round(frames.reduce((n, w) => n + bytes(w), 0) / frames.length);
    for (const subscribed of [false, true]) {
      for (let w = 0; w < 2; w++) await run(codec, frames, subscribed, compact); // warm-up
      const rates: Rate[] = [];
      for (let r = 0; r < 5; r++) rates.push(await run(codec, frames, subscribed, compact));
      const median = (key: keyof Rate) => rates.map((r) => r[key]).sort((a, b) => a - b)[2] ?? 0;
      results.push(
        `${codec.padEnd(8)} ${(compact ? 'compact' : 'full').padEnd(8)} ${String(perFrame).padStart(3)} B/frame  ${subscribed ? 'handlers + store subscriber' : 'handlers, no subscriber    '}  ${fmt(median('cpu'))} events/s of CPU time  (${fmt(median('wall'))} events/s wall clock)`,
      );
    }
  }
}
console.log(`decode + dispatch of ${EVENTS.toLocaleString('en-US')} event frames (half 128-byte custom, half state), node ${process.version}, medians of 5 runs:`);
for (const line of results) console.log(`  ${line}`);
