// A session's state as UI code wants it: the snapshot with every later
// event folded in, as immutable values that React (useSyncExternalStore),
// Svelte stores or plain code can compare by reference.
//
// Cost model: folding never copies while nobody holds the current value.
// The first change after the value was handed out (getState() or a
// listener call) copies the top-level object once; lists are copied once
// per batch, then appended in place. Listeners are called at most once per
// microtask, with the latest value, however many events arrived.
import { reportListenerError } from './emitter.js';
import type {
  Alert,
  ControlView,
  Counters,
  EventFrame,
  Job,
  Member,
  OpenQuestion,
  PendingCommandView,
  RendererMetrics,
  ResponseBody,
  SessionState,
  SessionStatus,
  SnapshotFrame,
} from './protocol.js';

/** A line of the conversation seen since joining (or since the last discontinuity). */
export interface ConversationLine {
  readonly kind: 'question' | 'response' | 'correction' | 'suggestion';
  /** question_id, response_id or intervention_id. */
  readonly id: string;
  readonly seq: number;
  /** The event's `ts`; for a session joined with `compact` (no `ts`), this client's clock when it arrived. */
  readonly ts: number;
  readonly text: string;
  /** participant_id for questions, operator_id for corrections and suggestions, null for responses. */
  readonly from: string | null;
  /** The participant's display name (questions). */
  readonly name?: string | null;
  /** The question a response answers. */
  readonly questionId?: string | null;
  /** The response a correction corrects. */
  readonly responseId?: string;
  /** The `say` command a response carries out. */
  readonly commandId?: string | null;
}

/** The latest emergency stop and whether the renderer acknowledged it (operators see the ack). */
export interface EmergencyStopView {
  readonly interventionId: string;
  readonly operatorId: string | null;
  readonly reason: string | null;
  readonly seq: number;
  readonly acknowledged: boolean;
}

export interface SessionView {
  readonly session: string;
  /** False until the first snapshot arrived. */
  readonly ready: boolean;
  readonly status: SessionStatus;
  readonly name: string | null;
  /** Slide, speaking, mode, topic... as the last `state` event carried it. */
  readonly state: SessionState;
  readonly counters: Counters;
  /** From presence (staff) or counters (everyone), whichever came last. */
  readonly participantCount: number;
  /** Present members (staff views; null for participants). */
  readonly members: readonly Member[] | null;
  /** True when the snapshot's member list was cut at the hub's cap. */
  readonly membersTruncated: boolean;
  /** Controller and renderer (staff views; null for participants). */
  readonly control: ControlView | null;
  /** The conversation context (staff views). */
  readonly context: unknown;
  /** Latest renderer metrics (operators). */
  readonly metrics: RendererMetrics | null;
  /** Open alerts, oldest first (operators). */
  readonly alerts: readonly Alert[];
  /** Responses held back during a takeover, oldest first (operators). */
  readonly heldResponses: readonly ResponseBody[];
  /**
   * Questions no response answers yet, oldest first (renderer and operator
   * views): the snapshot's `questions`, then `question` events; a response
   * (or held response) to one removes it. `asked_at` of a question seen as
   * an event is the event's `ts` (with `compact`, which has none, this
   * client's clock when it arrived; so is a pending command's `issued_at`).
   */
  readonly openQuestions: readonly OpenQuestion[];
  /**
   * Commands and emergency stops the renderer has not acknowledged, oldest
   * first (renderer and operator views): the snapshot's `pending_commands`,
   * then `command` and `emergency_stop` events; removed by the renderer's
   * `command_ack` (operators see it as an event; a renderer's own
   * `ackCommand` removes it from its view).
   */
  readonly pendingCommands: readonly PendingCommandView[];
  /** Questions, responses, corrections and suggestions of this view, oldest first, at most `conversationLimit`. */
  readonly conversation: readonly ConversationLine[];
  readonly emergencyStop: EmergencyStopView | null;
  /**
   * Jobs reporting into this session that this view may see (a job's own
   * stream, or operators of a presentation), each as its latest `job`
   * event left it, least recently changed first.
   */
  readonly jobs: readonly Job[];
}

export type StoreListener = (state: SessionView) => void;

type Draft = { -readonly [K in keyof SessionView]: SessionView[K] };
type ListKey = 'alerts' | 'heldResponses' | 'openQuestions' | 'pendingCommands' | 'conversation' | 'members';

const EMPTY_STATE: SessionState = {
  current_slide: 0,
  presentation_mode: '',
  is_speaking: false,
  awaiting_questions: false,
  operator_connected: false,
  current_topic: null,
  last_interaction: 0,
};
const EMPTY_COUNTERS: Counters = { participant_count: 0, questions_received: 0, operator_interventions: 0, error_count: 0 };

function initialView(session: string): Draft {
  return {
    session,
    ready: false,
    status: 'created',
    name: null,
    state: EMPTY_STATE,
    counters: EMPTY_COUNTERS,
    participantCount: 0,
    members: null,
    membersTruncated: false,
    control: null,
    context: null,
    metrics: null,
    alerts: [],
    heldResponses: [],
    openQuestions: [],
    pendingCommands: [],
    conversation: [],
    emergencyStop: null,
    jobs: [],
  };
}

export class SessionStore {
  private view: Draft;
  /** The current value was handed out: the next change must copy it. */
  private shared = false;
  /** Lists already copied since the last share (safe to change in place). */
  private owned = new Set<ListKey>();
  private dirty = false;
  private scheduled = false;
  private readonly listeners = new Set<StoreListener>();

  constructor(
    session: string,
    private readonly conversationLimit = 500,
  ) {
    this.view = initialView(session);
  }

  /** The current state. The same object until something changes. */
  getState(): SessionView {
    this.shared = true;
    return this.view;
  }

  /**
   * Calls `listener` with the new state after changes (at most once per
   * microtask). Returns the unsubscribe function.
   */
  subscribe(listener: StoreListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Replaces everything with a snapshot (first join, or after a discontinuity). */
  reset(s: SnapshotFrame): void {
    const staff = s.control !== undefined && s.control !== null;
    this.view = {
      session: s.session,
      ready: true,
      status: s.status,
      name: s.name ?? null,
      state: s.state,
      counters: s.counters,
      participantCount: s.presence.participant_count,
      members: s.presence.members ?? (staff ? [] : null),
      membersTruncated: s.presence.truncated ?? false,
      control: s.control ?? null,
      context: s.context ?? null,
      metrics: s.metrics ?? null,
      alerts: s.alerts ?? [],
      heldResponses: s.held_responses ?? [],
      openQuestions: s.questions ?? [],
      pendingCommands: s.pending_commands ?? [],
      conversation: [],
      emergencyStop: null,
      jobs: s.jobs ?? [],
    };
    this.shared = false;
    this.owned.clear();
    this.changed();
  }

  /** Folds one event into the state. Events that change nothing cost nothing. */
  apply(f: EventFrame): void {
    const e = f.event;
    switch (e.kind) {
      case 'created':
        this.draft().name = e.name;
        break;
      case 'lifecycle':
        this.draft().status = e.status;
        break;
      case 'state':
        this.draft().state = e.state;
        break;
      case 'context':
        this.draft().context = e.context;
        break;
      case 'counters': {
        const d = this.draft();
        d.counters = e.counters;
        d.participantCount = e.counters.participant_count;
        break;
      }
      case 'presence': {
        const d = this.draft();
        d.participantCount = e.participant_count;
        if (d.members !== null) {
          const members = this.list('members') as Member[];
          const at = members.findIndex((m) => m.id === e.member.id && m.role === e.member.role);
          if (e.change === 'join' && at < 0) members.push(e.member);
          else if (e.change === 'leave' && at >= 0) members.splice(at, 1);
        }
        break;
      }
      case 'renderer': {
        const d = this.draft();
        if (d.control !== null) d.control = { ...d.control, renderer_connected: e.connected, renderer_fence: e.fence };
        break;
      }
      case 'question':
        this.pushBounded('openQuestions', {
          question_id: e.question_id,
          participant_id: e.participant_id,
          participant_name: e.participant_name ?? null,
          text: e.text,
          asked_at: at(f),
        });
        this.pushBounded('conversation', {
          kind: 'question',
          id: e.question_id,
          seq: f.seq,
          ts: at(f),
          text: e.text,
          from: e.participant_id,
          name: e.participant_name ?? null,
        });
        break;
      case 'response': {
        const d = this.draft();
        if (e.question_id) this.answered(e.question_id);
        if (d.heldResponses.some((h) => h.response_id === e.response_id)) {
          d.heldResponses = d.heldResponses.filter((h) => h.response_id !== e.response_id);
          this.owned.add('heldResponses');
        }
        this.pushBounded('conversation', {
          kind: 'response',
          id: e.response_id,
          seq: f.seq,
          ts: at(f),
          text: e.text,
          from: null,
          questionId: e.question_id ?? null,
          commandId: e.command_id ?? null,
        });
        break;
      }
      case 'response_held': {
        const { kind: _kind, ...body } = e;
        (this.list('heldResponses') as ResponseBody[]).push(body);
        // A held response answers its question too (the hub's snapshot agrees).
        if (e.question_id) this.answered(e.question_id);
        break;
      }
      case 'takeover': {
        const d = this.draft();
        if (d.control !== null) d.control = { ...d.control, controller: e.operator_id };
        break;
      }
      case 'release': {
        const d = this.draft();
        if (d.control !== null) d.control = { ...d.control, controller: null };
        // The hub discards held responses on release (they stay in the
        // conversation history).
        d.heldResponses = [];
        this.owned.add('heldResponses');
        break;
      }
      case 'suggestion':
        this.pushBounded('conversation', {
          kind: 'suggestion',
          id: e.intervention_id,
          seq: f.seq,
          ts: at(f),
          text: e.text,
          from: e.operator_id,
        });
        break;
      case 'correction':
        this.pushBounded('conversation', {
          kind: 'correction',
          id: e.intervention_id,
          seq: f.seq,
          ts: at(f),
          text: e.text,
          from: e.operator_id,
          responseId: e.response_id,
        });
        break;
      case 'emergency_stop':
        this.draft().emergencyStop = {
          interventionId: e.intervention_id,
          operatorId: e.operator_id,
          reason: e.reason ?? null,
          seq: f.seq,
          acknowledged: false,
        };
        this.pending({ command_id: e.intervention_id, operator_id: e.operator_id, emergency: true, reason: e.reason ?? null, issued_at: at(f) });
        break;
      case 'command':
        this.pending({ command_id: e.command_id, operator_id: e.operator_id, emergency: false, command: e.command, issued_at: at(f) });
        break;
      case 'command_ack':
        this.acknowledged(e.command_id);
        break;
      case 'metrics':
        this.draft().metrics = e.metrics;
        break;
      case 'alert':
        (this.list('alerts') as Alert[]).push(e.alert);
        break;
      case 'alert_ack': {
        const d = this.draft();
        if (d.alerts.some((a) => a.alert_id === e.alert_id)) {
          d.alerts = d.alerts.filter((a) => a.alert_id !== e.alert_id);
          this.owned.add('alerts');
        }
        break;
      }
      case 'job': {
        // Few jobs share a stream: a fresh list per change is cheap.
        const d = this.draft();
        d.jobs = [...d.jobs.filter((j) => j.id !== e.job.id), e.job];
        break;
      }
      case 'custom':
        // App-defined events: handlers act on them; they change nothing
        // the store shows.
        break;
    }
  }

  /** A question was answered (a response or held response to it, or the renderer's own acked response). */
  answered(questionId: string): void {
    if (!this.view.openQuestions.some((q) => q.question_id === questionId)) return;
    const d = this.draft();
    d.openQuestions = d.openQuestions.filter((q) => q.question_id !== questionId);
    this.owned.add('openQuestions');
  }

  /** The renderer acknowledged a command or emergency stop (a `command_ack` event, or the renderer's own). */
  acknowledged(commandId: string): void {
    const stop = this.view.emergencyStop;
    if (stop !== null && stop.interventionId === commandId && !stop.acknowledged) {
      this.draft().emergencyStop = { ...stop, acknowledged: true };
    }
    if (!this.view.pendingCommands.some((c) => c.command_id === commandId)) return;
    const d = this.draft();
    d.pendingCommands = d.pendingCommands.filter((c) => c.command_id !== commandId);
    this.owned.add('pendingCommands');
  }

  private pending(c: PendingCommandView): void {
    if (this.view.pendingCommands.some((p) => p.command_id === c.command_id)) return;
    (this.list('pendingCommands') as PendingCommandView[]).push(c);
  }

  /** The view, writable: copied first if it was handed out. Marks a change. */
  private draft(): Draft {
    if (this.shared) {
      this.view = { ...this.view };
      this.shared = false;
      this.owned.clear();
    }
    this.changed();
    return this.view;
  }

  /** A list of the draft that may be changed in place. */
  private list(key: ListKey): unknown[] {
    const d = this.draft();
    const current = d[key] as readonly unknown[] | null;
    if (!this.owned.has(key)) {
      const copy = current === null ? [] : current.slice();
      (d as Record<ListKey, unknown>)[key] = copy;
      this.owned.add(key);
      return copy;
    }
    return current as unknown[];
  }

  /** Appends to a list kept within the conversation limit (oldest dropped). */
  private pushBounded<K extends 'conversation' | 'openQuestions'>(key: K, item: SessionView[K][number]): void {
    const l = this.list(key);
    l.push(item);
    if (l.length > this.conversationLimit) l.splice(0, l.length - this.conversationLimit);
  }

  private changed(): void {
    this.dirty = true;
    if (this.scheduled || this.listeners.size === 0) return;
    this.scheduled = true;
    queueMicrotask(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    if (!this.dirty) return;
    this.dirty = false;
    this.shared = true;
    const state = this.view;
    for (const l of this.listeners) {
      try {
        l(state);
      } catch (err) {
        reportListenerError(err);
      }
    }
  }
}

/** When an event happened: its `ts`, or, from a compact event frame (which has none), now. */
function at(f: EventFrame): number {
  return f.ts ?? Date.now();
}
