// One joined session: its position in the stream (for resume), its state
// store, typed handlers per event kind, and the frames each role sends.
// The client owns the connection; a Session only talks through `SessionLink`.
import { Emitter, reportListenerError } from './emitter.js';
import { ConnectionClosedError, HubError, SessionLeftError, type EvaError } from './errors.js';
import type { SendOptions } from './pending.js';
import type {
  AckFrame,
  AckableFrame,
  AckableFrameInput,
  ClientFrameOf,
  Command,
  DiscontinuityFrame,
  EventFrame,
  EventKind,
  EventOf,
  JoinedFrame,
  RendererMetrics,
  ResumedFrame,
  Role,
  ServerFrame,
  SessionFrame,
  SessionStatus,
  SnapshotFrame,
  StatePatch,
  StreamPosition,
  CustomAudience,
} from './protocol.js';
import { SessionStore, type SessionView, type StoreListener } from './store.js';

export interface JoinOptions {
  /** Display name for presence and questions (participants). */
  name?: string;
  /** Renderers: replace a live renderer (it is closed with 4504). */
  takeover?: boolean;
  /**
   * Receive this session's events as compact event frames (default: the
   * client's `compact`). Handlers and the store get the same events; the
   * frames have no `ts` (see `EventFrame`). Resume works as ever.
   */
  compact?: boolean;
  /**
   * `false`: the hub does not send the events published under this
   * connection's role and subject (on any of its connections); frames are
   * still acked. The store then does not fold them either. Default: the
   * client's `echo` (true).
   */
  echo?: boolean;
}

/** An emergency stop as the `emergency` handler receives it: once per intervention. */
export interface EmergencyStop {
  readonly interventionId: string;
  readonly reason: string | null;
  /** Known when it came as an event or in a snapshot; the `urgent` frame does not name the operator. */
  readonly operatorId: string | null;
  /** The stop's seq; for a stop found unacknowledged in a snapshot, the snapshot's seq. */
  readonly seq: number;
}

/** Fields of a `response` frame the renderer fills in. */
export type ResponseInput = Omit<ClientFrameOf<'response'>, 'type' | 'session' | 'id'>;

type KindEvents = { [K in EventKind as `event:${K}`]: [event: EventOf<K>, frame: EventFrame] };

/** Everything `session.on(...)` accepts, with the arguments each handler gets. */
export type SessionEvents = KindEvents & {
  /** The hub accepted the join (again after every reconnect). */
  joined: [frame: JoinedFrame];
  /**
   * A full snapshot replaced the state: the first join, or after a
   * discontinuity. For renderers and operators it lists the open
   * `questions` and the `pending_commands` (also in `getState()`): a
   * renderer answers the questions and carries out, then acknowledges
   * (`ackCommand`), the commands. Emergency stops among them have already
   * gone to the `emergency` handler (and were acknowledged) when this runs.
   */
  snapshot: [frame: SnapshotFrame];
  /** A resume succeeded; the missed events (`from`..`to`, none when from > to) follow. */
  resumed: [frame: ResumedFrame];
  /** A resume could not be exact: the state is replaced by the snapshot that follows. */
  discontinuity: [frame: DiscontinuityFrame];
  /** Every event, in order, after the store folded it. */
  event: [frame: EventFrame];
  /** An emergency stop, once per intervention, whichever of `urgent` and the event came first. */
  emergency: [stop: EmergencyStop];
  /** The session was left (`leave()`), or the connection closed for good. */
  left: [reason: EvaError | null];
  /** A refusal for this session that no promise is waiting for (e.g. a `command_ack` of an unknown command). */
  error: [err: HubError];
};

/** What a Session needs from its client. */
export interface SessionLink {
  readonly role: Role | undefined;
  /** Sends now; false when there is no live connection. */
  send(frame: SessionFrame): boolean;
  /** Registers a frame that waits for an ack (sent now or after the next join). */
  request(frame: SessionFrame & { id: string }, opts: SendOptions | undefined): Promise<AckFrame>;
  nextId(): string;
  /** The join was accepted on this connection: resend frames waiting for acks. */
  joined(session: string): void;
  /** The session is gone (left, refused): forget it and reject its frames. */
  forget(session: string, err: EvaError): void;
}

type JoinState = 'idle' | 'joining' | 'joined';

/** Joins tried again after a retryable refusal (`rate_limited`, `unavailable`...). */
const MAX_JOIN_RETRIES = 10;
/** command_ack frames kept while disconnected. */
const OUTBOX_MAX = 256;
/** Emergency stop ids remembered to call the handler once each. */
const SEEN_STOPS_MAX = 64;
/** Command acks remembered (to tell an ack in flight from one lost with a connection). */
const ACKED_MAX = 256;

export class Session {
  readonly id: string;
  private readonly store: SessionStore;
  private readonly emitter = new Emitter<Omit<SessionEvents, keyof KindEvents>>();
  private readonly kindListeners = new Map<EventKind, ((e: never, f: EventFrame) => void)[]>();
  private readonly customListeners = new Map<string, ((data: unknown, f: EventFrame) => void)[]>();
  private epoch: string | null = null;
  private seq = 0;
  private joinState: JoinState = 'idle';
  private joinId: string | undefined;
  private joinRetries = 0;
  private joinRetryTimer: ReturnType<typeof setTimeout> | undefined;
  private everJoined = false;
  private gone = false;
  private readonly outbox: SessionFrame[] = [];
  private readonly seenStops: string[] = [];
  /** Command ids this client acknowledged → the join they were sent on (undefined: still kept in the outbox). */
  private readonly acked = new Map<string, string | undefined>();
  private leaving: { id: string; resolve: () => void } | undefined;
  private readyResolve!: (s: SessionView) => void;
  private readyReject!: (e: EvaError) => void;
  private readySettled = false;

  /**
   * Resolves with the state once the first snapshot is in;
   * rejects if the join is refused or the connection closes first.
   */
  readonly ready: Promise<SessionView>;

  constructor(
    id: string,
    private readonly opts: JoinOptions,
    private readonly link: SessionLink,
    conversationLimit: number,
  ) {
    this.id = id;
    this.store = new SessionStore(id, conversationLimit);
    this.ready = new Promise<SessionView>((resolve, reject) => {
      this.readyResolve = resolve;
      this.readyReject = reject;
    });
    // Apps that only use handlers never await `ready`: its rejection must
    // not become an unhandled one (it is also emitted as `error`/`left`).
    this.ready.catch(() => undefined);
  }

  // ---------------------------------------------------------------- state

  /** The session's current state (immutable; the same object until it changes). */
  getState(): SessionView {
    return this.store.getState();
  }

  /** Calls `listener` after changes, at most once per microtask. Returns the unsubscribe function. */
  subscribe(listener: StoreListener): () => void {
    return this.store.subscribe(listener);
  }

  /** Where this client is in the session's stream: the position the next rejoin resumes from. */
  get position(): StreamPosition | null {
    return this.epoch === null ? null : { epoch: this.epoch, seq: this.seq };
  }

  /** True while joined on the live connection. */
  get joined(): boolean {
    return this.joinState === 'joined';
  }

  // ---------------------------------------------------------------- handlers

  /**
   * Adds a handler; returns a function that removes it. `event:<kind>` gets
   * events of one kind, fully typed, e.g. `on('event:question', q => ...)`.
   */
  on<K extends keyof SessionEvents>(name: K, fn: (...args: SessionEvents[K]) => void): () => void {
    if (typeof name === 'string' && name.startsWith('event:')) {
      return addTo(this.kindListeners, name.slice(6) as EventKind, fn as unknown as (e: never, f: EventFrame) => void);
    }
    return this.emitter.on(name as keyof Omit<SessionEvents, keyof KindEvents>, fn as never);
  }

  /** Handles app-defined (`custom`) events of one name, e.g. `onCustom('job.progress', d => ...)`. */
  onCustom<T = unknown>(name: string, fn: (data: T, frame: EventFrame) => void): () => void {
    return addTo(this.customListeners, name, fn as (data: unknown, f: EventFrame) => void);
  }

  // ---------------------------------------------------------------- any role

  /** Publishes an app-defined event (renderers and operators). */
  publish(name: string, data?: unknown, opts?: SendOptions & { audience?: CustomAudience }): Promise<AckFrame> {
    return this.request({ type: 'publish', session: this.id, name, data, audience: opts?.audience }, opts);
  }

  /**
   * Leaves the session (no presence grace). Frames still waiting for acks
   * are rejected with SessionLeftError.
   */
  leave(): Promise<void> {
    if (this.gone) return Promise.resolve();
    if (this.joinState !== 'joined') {
      this.finish(null);
      return Promise.resolve();
    }
    const id = this.link.nextId();
    return new Promise<void>((resolve) => {
      this.leaving = { id, resolve };
      this.link.send({ type: 'leave', session: this.id, id });
    });
  }

  // ---------------------------------------------------------------- renderer

  /** Changes slide, mode, speaking, questions, topic; absent fields are kept. */
  setState(state: StatePatch, opts?: SendOptions): Promise<AckFrame> {
    return this.request({ type: 'state', session: this.id, state }, opts);
  }

  /** Replaces the conversation context (a JSON object). */
  setContext(context: Record<string, unknown>, opts?: SendOptions): Promise<AckFrame> {
    return this.request({ type: 'context', session: this.id, context }, opts);
  }

  /** Reports metrics. A sample, not acknowledged: dropped (false) while disconnected. */
  reportMetrics(metrics: RendererMetrics): boolean {
    return this.joinState === 'joined' && this.link.send({ type: 'metrics', session: this.id, metrics });
  }

  /** Reports a lifecycle change: `starting`, `active`, `paused`, `failed`, or `stopped` while stopping. */
  setStatus(status: SessionStatus, reason?: string, opts?: SendOptions): Promise<AckFrame> {
    return this.request({ type: 'status', session: this.id, status, reason }, opts);
  }

  /**
   * Answers a question or carries out a `say` command. The ack comes once
   * it is stored; the question then leaves `openQuestions` (also when the
   * response is held during a takeover, which the renderer does not see).
   */
  async respond(response: ResponseInput, opts?: SendOptions): Promise<AckFrame> {
    const ack = await this.request({ type: 'response', session: this.id, ...response }, opts);
    if (response.question_id) this.store.answered(response.question_id);
    return ack;
  }

  /**
   * Acknowledges a command or an emergency stop (once: a second ack of the
   * same id is refused by the hub with `unknown_reference`). Kept and sent
   * after a reconnect if offline; it leaves `pendingCommands` at once.
   */
  ackCommand(commandId: string): void {
    this.acked.delete(commandId);
    this.acked.set(commandId, undefined);
    if (this.acked.size > ACKED_MAX) this.acked.delete(this.acked.keys().next().value as string);
    this.store.acknowledged(commandId);
    this.sendOrKeep({ type: 'command_ack', session: this.id, command_id: commandId });
  }

  // ---------------------------------------------------------------- participant

  /** Asks a question. `ack.ref_id` is the question_id; a resend never creates a second question. */
  ask(text: string, opts?: SendOptions): Promise<AckFrame> {
    return this.request({ type: 'question', session: this.id, text }, opts);
  }

  // ---------------------------------------------------------------- operator

  takeover(reason?: string, opts?: SendOptions): Promise<AckFrame> {
    return this.request({ type: 'takeover', session: this.id, reason }, opts);
  }

  release(opts?: SendOptions): Promise<AckFrame> {
    return this.request({ type: 'release', session: this.id }, opts);
  }

  /** Tells the renderer what to do (controlling operator only). */
  command(command: Command, opts?: SendOptions): Promise<AckFrame> {
    return this.request({ type: 'command', session: this.id, command }, opts);
  }

  suggest(text: string, opts?: SendOptions): Promise<AckFrame> {
    return this.request({ type: 'suggestion', session: this.id, text }, opts);
  }

  correct(responseId: string, text: string, opts?: SendOptions): Promise<AckFrame> {
    return this.request({ type: 'correction', session: this.id, response_id: responseId, text }, opts);
  }

  /** Stops the renderer ahead of everything queued for it. Never refused for lack of storage. */
  emergencyStop(reason?: string, opts?: SendOptions): Promise<AckFrame> {
    return this.request({ type: 'emergency_stop', session: this.id, reason }, opts);
  }

  /** Publishes a held response to everyone (controlling operator only). */
  approve(responseId: string, opts?: SendOptions): Promise<AckFrame> {
    return this.request({ type: 'approve', session: this.id, response_id: responseId }, opts);
  }

  ackAlert(alertId: string, opts?: SendOptions): Promise<AckFrame> {
    return this.request({ type: 'ack_alert', session: this.id, alert_id: alertId }, opts);
  }

  // ---------------------------------------------------------------- from the client

  /** @internal Sends (or re-sends, resuming) the join on a fresh connection. */
  sendJoin(): void {
    if (this.gone) return;
    if (this.leaving !== undefined) {
      // The connection dropped before `left` came: do not join again.
      this.finish(null);
      return;
    }
    clearTimeout(this.joinRetryTimer);
    this.joinState = 'joining';
    this.joinId = this.link.nextId();
    const resume = this.position;
    this.link.send({
      type: 'join',
      session: this.id,
      id: this.joinId,
      ...(resume ? { resume } : {}),
      ...(this.opts.name !== undefined ? { name: this.opts.name } : {}),
      ...(this.opts.compact === true ? { compact: true } : {}),
      ...(this.opts.echo === false ? { echo: false } : {}),
      // Only the first join may take over: a renderer that was replaced
      // must not take the session back by reconnecting.
      ...(this.opts.takeover && !this.everJoined ? { takeover: true } : {}),
    });
  }

  /** @internal The connection dropped; a rejoin follows the next welcome. */
  disconnected(): void {
    clearTimeout(this.joinRetryTimer);
    this.joinState = 'idle';
  }

  /** @internal The connection closed for good. */
  closed(err: ConnectionClosedError | EvaError): void {
    this.finish(err);
  }

  /** @internal The hot path: one event frame of this session. */
  handleEvent(f: EventFrame): void {
    // Resume is exact, so this never drops anything the hub meant to
    // deliver; it guarantees each event reaches the app at most once.
    if (f.seq <= this.seq) return;
    this.seq = f.seq;
    this.store.apply(f);
    // A stop acknowledged on its urgent frame, before this event came.
    if (f.event.kind === 'emergency_stop' && this.acked.has(f.event.intervention_id)) {
      this.store.acknowledged(f.event.intervention_id);
    }
    this.emitter.emit('event', f);
    const kind = f.event.kind;
    const list = this.kindListeners.get(kind);
    if (list !== undefined) callAll(list, f.event as never, f);
    if (kind === 'custom') {
      const custom = this.customListeners.get(f.event.name);
      if (custom !== undefined) callAll(custom, f.event.data, f);
    } else if (kind === 'emergency_stop') {
      const e = f.event;
      this.emergency({ interventionId: e.intervention_id, reason: e.reason ?? null, operatorId: e.operator_id, seq: f.seq });
    }
  }

  /** @internal Every other frame of this session. */
  handleFrame(f: ServerFrame): void {
    switch (f.type) {
      case 'joined':
        this.joinState = 'joined';
        this.everJoined = true;
        this.joinRetries = 0;
        this.emitter.emit('joined', f);
        this.link.joined(this.id);
        this.flushOutbox();
        break;
      case 'snapshot':
        this.epoch = f.epoch;
        this.seq = f.seq;
        this.store.reset(f);
        this.settleReady();
        for (const c of f.pending_commands ?? []) {
          if (this.acked.has(c.command_id)) {
            // Acknowledged already. Sent on this connection (flushed at the
            // join): in flight, the snapshot predates it. Sent on an earlier
            // one: lost with it, so acknowledge again.
            if (this.acked.get(c.command_id) === this.joinId) this.store.acknowledged(c.command_id);
            else this.ackCommand(c.command_id);
          } else if (c.emergency && this.link.role === 'renderer') {
            // Stops issued while this renderer was away come first: once
            // each, to the `emergency` handler, then acknowledged.
            this.emergency({ interventionId: c.command_id, reason: c.reason ?? null, operatorId: c.operator_id, seq: f.seq });
          }
        }
        this.emitter.emit('snapshot', f);
        break;
      case 'resumed':
        // from > to: nothing was missed. Either way the missed events, if
        // any, follow as ordinary event frames.
        this.epoch = f.epoch;
        this.emitter.emit('resumed', f);
        break;
      case 'discontinuity':
        // The snapshot that follows replaces the state.
        this.emitter.emit('discontinuity', f);
        break;
      case 'urgent':
        this.emergency({ interventionId: f.intervention_id, reason: f.reason ?? null, operatorId: null, seq: f.seq });
        break;
      case 'left':
        if (this.leaving !== undefined && f.id === this.leaving.id) this.finish(null);
        break;
      default:
        break;
    }
  }

  /** @internal An error frame naming this session that no pending frame claimed. */
  handleError(err: HubError): void {
    if (err.id !== undefined && err.id === this.leaving?.id) {
      // Not joined any more (e.g. the join was lost with the connection): left anyway.
      this.finish(null);
      return;
    }
    if (err.id === undefined || err.id !== this.joinId) {
      this.emitter.emit('error', err);
      return;
    }
    // `renderer_active` is final, on a rejoin too: a renderer rejoining under
    // its own subject replaces its previous connection (the hub closes that
    // one with 4504, on a socket this client has already dropped), so this
    // refusal means another renderer is live.
    if (err.retryable && this.joinRetries < MAX_JOIN_RETRIES) {
      const delay = Math.max(err.retryAfterMs ?? 0, 100 * 2 ** Math.min(this.joinRetries, 7));
      this.joinRetries += 1;
      this.joinState = 'idle';
      this.joinRetryTimer = setTimeout(() => this.sendJoin(), delay);
      return;
    }
    this.emitter.emit('error', err);
    this.finish(err);
  }

  // ---------------------------------------------------------------- internals

  private request(frame: AckableFrameInput, opts: SendOptions | undefined): Promise<AckFrame> {
    if (this.gone) return Promise.reject(new SessionLeftError(this.id));
    const id = opts?.id ?? this.link.nextId();
    return this.link.request({ ...frame, id } as AckableFrame & { id: string }, opts);
  }

  private sendOrKeep(frame: SessionFrame): void {
    if (this.joinState === 'joined' && this.link.send(frame)) {
      this.sent(frame);
      return;
    }
    if (this.outbox.length >= OUTBOX_MAX) this.outbox.shift();
    this.outbox.push(frame);
  }

  private flushOutbox(): void {
    while (this.outbox.length > 0 && this.link.send(this.outbox[0] as SessionFrame)) this.sent(this.outbox.shift() as SessionFrame);
  }

  /** Notes which join a command ack went out on. */
  private sent(frame: SessionFrame): void {
    if (frame.type === 'command_ack' && this.acked.has(frame.command_id)) this.acked.set(frame.command_id, this.joinId);
  }

  private emergency(stop: EmergencyStop): void {
    if (this.seenStops.includes(stop.interventionId)) return;
    this.seenStops.push(stop.interventionId);
    if (this.seenStops.length > SEEN_STOPS_MAX) this.seenStops.shift();
    const handled = this.emitter.has('emergency');
    this.emitter.emit('emergency', stop);
    // Acknowledge only what an app handler has seen: without one, the
    // hub's `emergency_stop_unacknowledged` alert tells operators the truth.
    if (handled && this.link.role === 'renderer') this.ackCommand(stop.interventionId);
  }

  private settleReady(): void {
    if (this.readySettled) return;
    this.readySettled = true;
    this.readyResolve(this.store.getState());
  }

  /** Ends the handle: left (err null), refused, or closed with the connection. */
  private finish(err: EvaError | null): void {
    if (this.gone) return;
    this.gone = true;
    this.joinState = 'idle';
    clearTimeout(this.joinRetryTimer);
    const reason = err ?? new SessionLeftError(this.id);
    if (!this.readySettled) {
      this.readySettled = true;
      this.readyReject(reason);
    }
    this.link.forget(this.id, reason);
    this.leaving?.resolve();
    this.leaving = undefined;
    this.emitter.emit('left', err);
  }
}

function addTo<K, F>(map: Map<K, F[]>, key: K, fn: F): () => void {
  map.set(key, [...(map.get(key) ?? []), fn]);
  return () => {
    const next = (map.get(key) ?? []).filter((l) => l !== fn);
    if (next.length > 0) map.set(key, next);
    else map.delete(key);
  };
}

function callAll<A, B>(list: readonly ((a: A, b: B) => void)[], a: A, b: B): void {
  for (const fn of list) {
    try {
      fn(a, b);
    } catch (err) {
      reportListenerError(err);
    }
  }
}
