// One watched session: the SDK's session handle and store, plus what the
// console keeps beyond them.
//
// The SDK's store starts its conversation afresh at every snapshot (the
// first join, and after a discontinuity such as a hub restart). An
// operator must not lose the lines they were reading, nor see them twice,
// so the console keeps its own conversation log keyed by the hub's ids
// (question, response and intervention ids), which survives snapshots.
// It also keeps the open questions as the hub's snapshot lists them, the
// metrics history for the charts, the live transcript, and the state of
// the last emergency stop (sent, acknowledged with its latency, or
// escalated).
import type { Alert, EvaClient, EventFrame, Session, SessionView, SnapshotFrame } from '@eva-hub/client';
import { snapshotExtras } from '../shared/hub.js';

export type LineKind = 'question' | 'response' | 'held' | 'say' | 'correction' | 'suggestion' | 'system';

export interface Line {
  readonly id: string;
  kind: LineKind;
  readonly ts: number;
  text: string;
  /** Who: the participant's name, the operator's id, or null for the avatar. */
  readonly who: string | null;
  readonly questionId?: string | null;
  readonly responseId?: string;
  confidence?: number;
  responseTimeMs?: number;
  /** Held responses: approved (published) or discarded (released). */
  fate?: 'approved' | 'discarded';
  /** Bumped on every change of this line, for the renderer. */
  rev: number;
}

export interface OpenQuestion {
  readonly id: string;
  readonly text: string;
  readonly who: string;
  readonly askedAt: number;
}

export type StopState = 'sending' | 'sent' | 'acknowledged' | 'unacknowledged' | 'failed';

export interface StopView {
  state: StopState;
  interventionId: string | null;
  operatorId: string | null;
  mine: boolean;
  latencyMs: number | null;
  timeoutMs: number | null;
  error: string | null;
  at: number;
}

/** What list_sessions said about a session. */
export interface Summary {
  session: string;
  name?: string | null;
  status: string;
  created_at: number;
  participant_count: number;
  renderer_connected: boolean;
  controller?: string | null;
  is_speaking: boolean;
  current_slide: number;
  open_alerts: number;
}

/** Metric samples kept per session (at most one a second: 5 minutes). */
const HISTORY = 300;
const LINES_MAX = 500;

/**
 * The last five minutes of stage latencies, in fixed-size ring buffers
 * allocated once: a session's metrics cost the same memory from the first
 * sample to the millionth.
 */
export class MetricHistory {
  private readonly cols = [new Float64Array(HISTORY), new Float64Array(HISTORY), new Float64Array(HISTORY), new Float64Array(HISTORY), new Float64Array(HISTORY)] as const;
  private next = 0;
  private count = 0;
  rev = 0;

  push(ts: number, stages: { stt_ms?: number | null; llm_ms?: number | null; tts_ms?: number | null; total_ms?: number | null }): void {
    const values = [ts / 1000, stages.stt_ms, stages.llm_ms, stages.tts_ms, stages.total_ms];
    for (let i = 0; i < 5; i++) this.cols[i]![this.next] = values[i] ?? Number.NaN;
    this.next = (this.next + 1) % HISTORY;
    this.count = Math.min(HISTORY, this.count + 1);
    this.rev += 1;
  }

  /** Oldest first, as uPlot wants it: time, STT, LLM, TTS, end to end (null where missing). */
  series(): [number[], ...(number | null)[][]] {
    const start = (this.next - this.count + HISTORY) % HISTORY;
    const out = this.cols.map(() => new Array<number | null>(this.count));
    for (let k = 0; k < this.count; k++) {
      const at = (start + k) % HISTORY;
      for (let i = 0; i < 5; i++) {
        const v = this.cols[i]![at]!;
        out[i]![k] = Number.isNaN(v) ? null : v;
      }
    }
    return out as [number[], ...(number | null)[][]];
  }
}

export class SessionWatch {
  readonly id: string;
  readonly handle: Session;
  summary: Summary;
  /** Conversation lines, oldest first, by id. */
  readonly lines = new Map<string, Line>();
  readonly open = new Map<string, OpenQuestion>();
  readonly metrics = new MetricHistory();
  transcript: { text: string; final: boolean; ts: number } | null = null;
  stop: StopView | null = null;
  /** Bumped on every change: list and view renderers compare it. */
  rev = 0;
  /** Bumped when the conversation changes. */
  linesRev = 0;
  /** The hub refused the join, or the session went away. */
  gone: string | null = null;
  private readonly acks = new Map<string, number>();
  private readonly offs: (() => void)[] = [];

  constructor(
    client: EvaClient,
    summary: Summary,
    private readonly me: () => string | undefined,
    private readonly changed: (w: SessionWatch) => void,
  ) {
    this.id = summary.session;
    this.summary = summary;
    this.handle = client.join(summary.session);
    this.offs.push(
      this.handle.subscribe(() => this.touch()),
      this.handle.on('snapshot', (s) => this.onSnapshot(s)),
      this.handle.on('event', (f) => this.onEvent(f)),
      this.handle.on('left', (err) => {
        this.gone = err ? (err.message ?? 'left') : 'left';
        this.touch();
      }),
      this.handle.on('error', () => this.touch()),
    );
  }

  get view(): SessionView {
    return this.handle.getState();
  }

  get name(): string {
    return this.view.name ?? this.summary.name ?? this.id.slice(0, 8);
  }

  get controller(): string | null {
    const c = this.view.control;
    return c ? c.controller ?? null : this.summary.controller ?? null;
  }

  get alerts(): readonly Alert[] {
    return this.view.ready ? this.view.alerts : [];
  }

  /** Lines in order, oldest first. */
  conversation(): Line[] {
    return [...this.lines.values()];
  }

  dispose(): void {
    for (const off of this.offs) off();
    void this.handle.leave();
  }

  touch(): void {
    this.rev += 1;
    this.changed(this);
  }

  // ------------------------------------------------------------ interventions

  /** Sends an emergency stop and follows it to its acknowledgement. */
  async emergencyStop(reason: string): Promise<void> {
    this.stop = { state: 'sending', interventionId: null, operatorId: this.me() ?? null, mine: true, latencyMs: null, timeoutMs: null, error: null, at: Date.now() };
    this.touch();
    try {
      const ack = await this.handle.emergencyStop(reason || undefined);
      const id = ack.ref_id ?? null;
      const stop = this.stop;
      if (stop !== null && stop.mine && (stop.interventionId === null || stop.interventionId === id)) {
        stop.interventionId = id;
        if (stop.state === 'sending') stop.state = 'sent';
        this.settleStop();
        this.touch();
      }
    } catch (err) {
      if (this.stop?.state === 'sending') {
        this.stop.state = 'failed';
        this.stop.error = (err as Error).message;
        this.touch();
      }
      throw err;
    }
  }

  /** A `command_ack` seen before the stop's id was known settles it now. */
  private settleStop(): void {
    const stop = this.stop;
    if (stop === null || stop.interventionId === null || stop.state === 'acknowledged') return;
    const latency = this.acks.get(stop.interventionId);
    if (latency !== undefined) {
      stop.state = 'acknowledged';
      stop.latencyMs = latency;
    }
  }

  // ------------------------------------------------------------ folding

  private onSnapshot(s: SnapshotFrame): void {
    // The snapshot is the truth about what is open now; the lines seen
    // before it stay (they happened), and new ones are added once.
    const { questions, pending } = snapshotExtras(s);
    this.open.clear();
    for (const q of questions) {
      const who = q.participant_name ?? q.participant_id;
      this.open.set(q.question_id, { id: q.question_id, text: q.text, who, askedAt: q.asked_at });
      this.addLine({ id: q.question_id, kind: 'question', ts: q.asked_at, text: q.text, who, questionId: null });
    }
    for (const r of s.held_responses ?? []) {
      this.addLine({ id: r.response_id, kind: 'held', ts: Date.now(), text: r.text, who: null, questionId: r.question_id ?? null, confidence: r.confidence, responseTimeMs: r.response_time_ms });
    }
    const stop = pending.find((p) => p.emergency);
    if (stop !== undefined && this.stop?.interventionId !== stop.command_id) {
      this.stop = { state: 'sent', interventionId: stop.command_id, operatorId: stop.operator_id, mine: stop.operator_id === this.me(), latencyMs: null, timeoutMs: null, error: null, at: stop.issued_at };
    }
    this.touch();
  }

  private onEvent(f: EventFrame): void {
    const e = f.event;
    // The console joins with full event frames, which always carry `ts`
    // (only compact ones leave it out).
    const ts = f.ts ?? Date.now();
    switch (e.kind) {
      case 'question': {
        const who = e.participant_name ?? e.participant_id;
        this.open.set(e.question_id, { id: e.question_id, text: e.text, who, askedAt: ts });
        this.addLine({ id: e.question_id, kind: 'question', ts, text: e.text, who, questionId: null });
        break;
      }
      case 'response':
      case 'response_held': {
        if (e.question_id) this.open.delete(e.question_id);
        const existing = this.lines.get(e.response_id);
        if (existing !== undefined && e.kind === 'response') {
          // A held response was approved: the same id, now published.
          existing.kind = e.command_id ? 'say' : 'response';
          if (existing.fate === undefined && existing.kind === 'response') existing.fate = 'approved';
          existing.rev += 1;
          this.linesRev += 1;
        } else {
          this.addLine({
            id: e.response_id,
            kind: e.kind === 'response_held' ? 'held' : e.command_id ? 'say' : 'response',
            ts,
            text: e.text,
            who: null,
            questionId: e.question_id ?? null,
            confidence: e.confidence,
            responseTimeMs: e.response_time_ms,
          });
        }
        break;
      }
      case 'correction':
        this.addLine({ id: e.intervention_id, kind: 'correction', ts, text: e.text, who: e.operator_id, responseId: e.response_id });
        break;
      case 'suggestion':
        this.addLine({ id: e.intervention_id, kind: 'suggestion', ts, text: e.text, who: e.operator_id });
        break;
      case 'takeover':
        this.addLine({ id: `takeover-${e.intervention_id}`, kind: 'system', ts, text: `${e.operator_id} took the session over${e.reason ? ` (${e.reason})` : ''}`, who: e.operator_id });
        break;
      case 'release': {
        const why = e.reason === 'expired' ? ' (the operator left)' : e.reason === 'session_ended' ? ' (the session ended)' : '';
        this.addLine({ id: `release-${e.intervention_id}`, kind: 'system', ts, text: `${e.operator_id} released the session${why}`, who: e.operator_id });
        // Held responses nobody approved are discarded by the hub.
        for (const l of this.lines.values()) {
          if (l.kind === 'held' && l.fate === undefined) {
            l.fate = 'discarded';
            l.rev += 1;
            this.linesRev += 1;
          }
        }
        break;
      }
      case 'emergency_stop': {
        this.addLine({ id: `stop-${e.intervention_id}`, kind: 'system', ts, text: `Emergency stop by ${e.operator_id}${e.reason ? `: ${e.reason}` : ''}`, who: e.operator_id });
        const mine = e.operator_id === this.me();
        const stop = this.stop;
        if (stop !== null && stop.mine && mine && (stop.interventionId === null || stop.interventionId === e.intervention_id)) {
          stop.interventionId = e.intervention_id;
          if (stop.state === 'sending') stop.state = 'sent';
        } else if (stop === null || stop.interventionId !== e.intervention_id) {
          this.stop = { state: 'sent', interventionId: e.intervention_id, operatorId: e.operator_id, mine, latencyMs: null, timeoutMs: null, error: null, at: ts };
        }
        this.settleStop();
        break;
      }
      case 'command_ack': {
        this.acks.set(e.command_id, e.latency_ms);
        if (this.acks.size > 64) {
          const first = this.acks.keys().next().value;
          if (first !== undefined) this.acks.delete(first);
        }
        this.settleStop();
        break;
      }
      case 'alert': {
        const a = e.alert;
        const meta = (a.metadata ?? {}) as { intervention_id?: string; timeout_ms?: number };
        if (a.alert_type === 'emergency_stop_unacknowledged' && this.stop !== null && meta.intervention_id === this.stop.interventionId && this.stop.state !== 'acknowledged') {
          this.stop.state = 'unacknowledged';
          this.stop.timeoutMs = meta.timeout_ms ?? null;
        }
        break;
      }
      case 'lifecycle':
        this.addLine({ id: `lifecycle-${this.handle.position?.epoch ?? ''}-${f.seq}`, kind: 'system', ts, text: `Session ${e.status}${e.reason ? ` (${e.reason})` : ''}`, who: e.by ?? null });
        break;
      case 'metrics':
        if (e.metrics.stages) this.metrics.push(ts, e.metrics.stages);
        break;
      case 'custom':
        if (e.name === 'transcript' && typeof e.data === 'object' && e.data !== null) {
          const d = e.data as { text?: unknown; final?: unknown };
          if (typeof d.text === 'string') this.transcript = { text: d.text, final: d.final === true, ts };
        }
        break;
      default:
        break;
    }
    this.touch();
  }

  private addLine(l: Omit<Line, 'rev'>): void {
    if (this.lines.has(l.id)) return;
    this.lines.set(l.id, { ...l, rev: 0 });
    this.linesRev += 1;
    if (this.lines.size > LINES_MAX) {
      const first = this.lines.keys().next().value;
      if (first !== undefined) this.lines.delete(first);
    }
  }
}
