// The entry point: one connection to the hub, any number of joined
// sessions (operators watch many; renderers and participants one), frames
// that wait for acks, and the rejoin-with-resume after every reconnect.
import { backoffDefaults, type BackoffOptions } from './backoff.js';
import { createCodec, type CodecName } from './codec.js';
import {
  Connection,
  type ConnectionState,
  type ConnectionStatus,
  type TokenSource,
  type WebSocketConstructor,
} from './connection.js';
import { Emitter } from './emitter.js';
import { ConnectionClosedError, EvaError, HandshakeError, HubError, SessionLeftError } from './errors.js';
import { IdGenerator } from './ids.js';
import { PendingFrames, type SendOptions } from './pending.js';
import type {
  AckFrame,
  CompactEventFrame,
  Event,
  IncomingFrame,
  Role,
  SessionFrame,
  SessionStatus,
  SessionSummary,
  WelcomeFrame,
} from './protocol.js';
import { Session, type JoinOptions, type SessionLink } from './session.js';

export interface ClientOptions {
  /** The hub's WebSocket endpoint, `wss://host/v1/ws` (an `https://host` base gets `/v1/ws`). */
  url: string;
  /** A connection token, or a function returning a fresh one (called again after close 4002, or HTTP 401 `token_expired` on the handshake). */
  token: TokenSource;
  /** Wire encoding: `json` (eva.v1.json, default) or `msgpack` (eva.v1.msgpack). */
  codec?: CodecName;
  /** A WebSocket implementation; default `globalThis.WebSocket`. In Node 20: `import WebSocket from 'ws'`. */
  WebSocket?: WebSocketConstructor;
  /**
   * How the token is presented: `frame` (an `auth` frame, what browsers
   * must do) or `header` (`Authorization: Bearer`, needs a `ws`-compatible
   * constructor). Default: `header` in Node, `frame` elsewhere.
   */
  auth?: 'frame' | 'header';
  /** Reconnect backoff: full jitter between 0 and min(maxDelayMs, minDelayMs * 2^attempt). */
  reconnect?: BackoffOptions;
  /** Socket open plus `welcome`, ms. Default 10000. */
  connectTimeoutMs?: number;
  /** Liveness interval instead of the hub's `heartbeat_ms` (tests). */
  heartbeatMs?: number;
  /** Resends of a frame refused with a retryable error (`rate_limited`, `backlog_full`...). Default 8. */
  maxRetries?: number;
  /** Conversation lines and open questions kept per session store. Default 500. */
  conversationLimit?: number;
  /**
   * Join sessions with compact event frames (each `join` may override it).
   * Default false. The hub then sends each event as `{e, q, ...event}`:
   * about a third fewer bytes and less to decode. Handlers and the store
   * get the same events, but the frame has no `ts` (the store's times for
   * such events are this client's clock at arrival). Resume is unchanged.
   */
  compact?: boolean;
  /** `false`: join sessions without the events this role and subject published (each `join` may override it). Default true. */
  echo?: boolean;
}

export interface ListSessionsOptions {
  /** Only sessions in this status. */
  status?: SessionStatus;
  /** Ended sessions (`stopped`, `failed`) too; default false. */
  includeEnded?: boolean;
  /** 1 to 500; the hub's default is 100. */
  limit?: number;
}

export interface ClientEvents {
  /** The connection state changed (`connecting`, `connected`, `reconnecting`, `closed`). */
  connection: [status: ConnectionStatus];
  /** Authenticated; sessions are being (re)joined. */
  welcome: [frame: WelcomeFrame];
  /** A problem no promise or session handler claimed (undecodable frame, stray error frame). */
  error: [err: EvaError];
}

export class EvaClient {
  private readonly conn: Connection;
  private readonly pending: PendingFrames;
  private readonly ids = new IdGenerator();
  private readonly emitter = new Emitter<ClientEvents>();
  private readonly live = new Map<string, Session>();
  /** Sessions by the alias the current connection's `joined` gave them (compact event frames name them so). */
  private readonly aliases = new Map<number, Session>();
  private readonly joinDefaults: { compact: boolean; echo: boolean };
  private readonly conversationLimit: number;
  private lastStatus: ConnectionStatus = { state: 'closed', previous: 'closed' };
  private lastWelcome: WelcomeFrame | undefined;
  private readonly link: SessionLink;
  /** `list_sessions` requests waiting for their `session_list`, by id. */
  private readonly listings = new Map<string, { resolve: (s: SessionSummary[]) => void; reject: (e: EvaError) => void }>();

  constructor(opts: ClientOptions) {
    const WebSocketImpl = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (WebSocketImpl === undefined) {
      throw new TypeError("no WebSocket implementation: pass { WebSocket } (in Node 20: import WebSocket from 'ws')");
    }
    const isNode = typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === 'string';
    const backoff = backoffDefaults(opts.reconnect);
    this.conversationLimit = opts.conversationLimit ?? 500;
    this.joinDefaults = { compact: opts.compact ?? false, echo: opts.echo ?? true };
    this.conn = new Connection(
      {
        url: wsUrl(opts.url),
        codec: createCodec(opts.codec ?? 'json'),
        WebSocket: WebSocketImpl,
        auth: opts.auth ?? (isNode ? 'header' : 'frame'),
        token: opts.token,
        backoff,
        connectTimeoutMs: opts.connectTimeoutMs ?? 10_000,
        heartbeatMs: opts.heartbeatMs,
      },
      {
        onWelcome: (w) => this.onWelcome(w),
        onFrame: (f) => this.onFrame(f),
        onStatus: (s) => this.onStatus(s),
        onClosed: (e) => this.onClosed(e),
        onDecodeError: (e) => this.emitter.emit('error', e),
      },
    );
    this.pending = new PendingFrames((session, frame) => this.transmit(session, frame), {
      maxRetries: opts.maxRetries ?? 8,
      backoff,
    });
    // The narrow interface sessions use to reach the connection.
    const client = this;
    this.link = {
      get role(): Role | undefined {
        return client.lastWelcome?.role;
      },
      send: (frame) => this.conn.send(frame),
      request: (frame, o) => this.pending.add(frame, o),
      nextId: () => this.ids.next(),
      joined: (session) => this.pending.resend(session),
      forget: (session, err) => {
        this.live.delete(session);
        for (const [alias, s] of this.aliases) if (s.id === session) this.aliases.delete(alias);
        this.pending.rejectSession(session, (id) => (err instanceof SessionLeftError ? new SessionLeftError(session, id) : err));
      },
    };
  }

  /** `connecting`, `connected`, `reconnecting` or `closed`. */
  get state(): ConnectionState {
    return this.lastStatus.state;
  }

  /** The last status, with the close code and reason of the last drop. */
  get status(): ConnectionStatus {
    return this.lastStatus;
  }

  /** The hub's `welcome` on the current connection (role, subject, limits). */
  get welcome(): WelcomeFrame | undefined {
    return this.lastWelcome;
  }

  /** Sessions joined (or being joined) by this client. */
  get sessions(): ReadonlyMap<string, Session> {
    return this.live;
  }

  /** Frames waiting for their ack. */
  get pendingCount(): number {
    return this.pending.size;
  }

  on<K extends keyof ClientEvents>(name: K, fn: (...args: ClientEvents[K]) => void): () => void {
    return this.emitter.on(name, fn);
  }

  /**
   * Connects (if not already) and resolves on `welcome`. Rejects if the
   * connection closes for good first; reconnectable failures are retried.
   */
  connect(): Promise<WelcomeFrame> {
    if (this.lastStatus.state === 'connected' && this.lastWelcome !== undefined) return Promise.resolve(this.lastWelcome);
    const done = new Promise<WelcomeFrame>((resolve, reject) => {
      const offWelcome = this.emitter.once('welcome', (w) => {
        offStatus();
        resolve(w);
      });
      const offStatus = this.emitter.on('connection', (s) => {
        if (s.state !== 'closed') return;
        offWelcome();
        offStatus();
        reject(s.error ?? new ConnectionClosedError(1000, 'closed'));
      });
    });
    this.conn.open();
    return done;
  }

  /**
   * Joins a session and returns its handle at once, so handlers can be
   * added before any event arrives; `await session.ready` for the first
   * state. Connects if needed. After a reconnect the session is joined
   * again and resumed from the last event seen.
   */
  join(sessionId: string, opts: JoinOptions = {}): Session {
    const existing = this.live.get(sessionId);
    if (existing !== undefined) return existing;
    const session = new Session(
      sessionId,
      { ...opts, compact: opts.compact ?? this.joinDefaults.compact, echo: opts.echo ?? this.joinDefaults.echo },
      this.link,
      this.conversationLimit,
    );
    this.live.set(sessionId, session);
    if (this.lastStatus.state === 'connected') session.sendJoin();
    else if (this.lastStatus.state === 'closed') void this.connect().catch(() => undefined);
    return session;
  }

  /**
   * The tenant's sessions, newest first (operators only): what a console's
   * overview lists. Connects if needed; rejects with the hub's error (e.g.
   * `forbidden` for other roles) or when the connection closes for good.
   */
  async listSessions(opts: ListSessionsOptions = {}): Promise<SessionSummary[]> {
    await this.connect();
    const id = this.ids.next();
    return new Promise<SessionSummary[]>((resolve, reject) => {
      this.listings.set(id, { resolve, reject });
      const sent = this.conn.send({
        type: 'list_sessions',
        id,
        ...(opts.status !== undefined ? { status: opts.status } : {}),
        ...(opts.includeEnded === true ? { include_ended: true } : {}),
        ...(opts.limit !== undefined ? { limit: opts.limit } : {}),
      });
      if (!sent) {
        this.listings.delete(id);
        reject(new ConnectionClosedError(1006, 'not connected'));
      }
    });
  }

  /** The handle of a joined session. */
  session(sessionId: string): Session | undefined {
    return this.live.get(sessionId);
  }

  /**
   * Closes the connection for good (code 1000). Frames still waiting for
   * acks are rejected with ConnectionClosedError (their outcome is unknown:
   * resend with the same `id` later if it matters); sessions end.
   */
  close(): void {
    this.conn.close();
  }

  /** Drops the socket and reconnects, resuming every session (as after a network failure). */
  reconnect(): void {
    this.conn.reconnect();
  }

  /** Sends a session's frame if that session is joined on the live connection. */
  private transmit(session: string, frame: SessionFrame): boolean {
    const s = this.live.get(session);
    return s !== undefined && s.joined && this.conn.send(frame);
  }

  private onWelcome(w: WelcomeFrame): void {
    this.lastWelcome = w;
    // Aliases belong to a connection: each rejoin's `joined` gives new ones.
    this.aliases.clear();
    this.emitter.emit('welcome', w);
    for (const s of this.live.values()) s.sendJoin();
  }

  private onFrame(f: IncomingFrame): void {
    if (!('type' in f)) {
      this.onCompact(f);
      return;
    }
    switch (f.type) {
      case 'event':
        this.live.get(f.session)?.handleEvent(f);
        return;
      case 'ack':
        this.pending.ack(f);
        return;
      case 'session_list': {
        const waiting = f.id ? this.listings.get(f.id) : undefined;
        if (waiting !== undefined && f.id) {
          this.listings.delete(f.id);
          waiting.resolve(f.sessions);
        }
        return;
      }
      case 'error': {
        const err = HubError.fromFrame(f);
        const listing = f.id ? this.listings.get(f.id) : undefined;
        if (listing !== undefined && f.id) {
          this.listings.delete(f.id);
          listing.reject(err);
          return;
        }
        if (this.pending.error(err)) return;
        const s = f.session ? this.live.get(f.session) : undefined;
        if (s !== undefined) s.handleError(err);
        else this.emitter.emit('error', err);
        return;
      }
      case 'joined': {
        const s = this.live.get(f.session);
        if (s === undefined) return;
        for (const [alias, other] of this.aliases) if (other === s) this.aliases.delete(alias);
        if (typeof f.alias === 'number') this.aliases.set(f.alias, s);
        s.handleFrame(f);
        return;
      }
      case 'snapshot':
      case 'resumed':
      case 'discontinuity':
      case 'urgent':
      case 'left':
        this.live.get(f.session)?.handleFrame(f);
        return;
      case 'pong':
      case 'welcome':
        return;
    }
  }

  /**
   * A compact event frame: `e` names the session by alias, `q` is the seq,
   * the rest is the event itself, handed on exactly as a full `event`
   * frame's `event` would be.
   */
  private onCompact(f: CompactEventFrame): void {
    const { e, q, ...event } = f;
    // An unknown alias: a session left while its events were in flight
    // (as full events of a session no longer joined, they are dropped).
    const s = this.aliases.get(e);
    if (s !== undefined) s.handleEvent({ type: 'event', session: s.id, seq: q, event: event as Event });
  }

  private onStatus(s: ConnectionStatus): void {
    this.lastStatus = s;
    if (s.state !== 'connected') {
      for (const session of this.live.values()) session.disconnected();
      // A listing asked on a connection that is gone will never be
      // answered: the caller asks again once reconnected.
      for (const l of this.listings.values()) l.reject(new ConnectionClosedError(s.closeCode ?? 1006, 'connection lost before the session list arrived'));
      this.listings.clear();
    }
    this.emitter.emit('connection', s);
  }

  private onClosed(err: ConnectionClosedError | HandshakeError): void {
    this.pending.rejectAll((id) => (err instanceof ConnectionClosedError ? err.forFrame(id) : err));
    for (const l of this.listings.values()) l.reject(err);
    this.listings.clear();
    for (const s of [...this.live.values()]) s.closed(err);
    this.live.clear();
  }
}

/** `https://hub` → `wss://hub/v1/ws`; WebSocket URLs pass unchanged. */
function wsUrl(url: string): string {
  const u = new URL(url);
  if (u.protocol === 'http:' || u.protocol === 'https:') {
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    if (u.pathname === '/' || u.pathname === '') u.pathname = '/v1/ws';
  }
  return u.toString();
}

export type { AckFrame, SendOptions };
