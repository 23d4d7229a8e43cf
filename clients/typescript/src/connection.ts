// One logical connection to the hub over a succession of WebSockets:
// authenticates, waits for `welcome`, watches liveness with app-level
// pings, and on a drop decides by the close code whether to reconnect
// (with backoff and jitter) or to stop for good. It knows nothing about
// sessions; the client re-joins them on every `welcome`.
import { backoffDelay, type BackoffOptions } from './backoff.js';
import { ABNORMAL_CLOSURE, closeCodeName, shouldReconnect } from './closecodes.js';
import type { Codec, WireData } from './codec.js';
import { ConnectionClosedError, EvaError, HandshakeError } from './errors.js';
import type { ClientFrame, ErrorCode, IncomingFrame, WelcomeFrame } from './protocol.js';

/**
 * The part of the WebSocket API the SDK uses: the browser's `WebSocket`,
 * Node 22's global one, and the `ws` package all fit. Handler parameters
 * are `never` so every implementation's own event types are accepted.
 */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  binaryType: string;
  onopen: ((ev: never) => void) | null;
  onmessage: ((ev: never) => void) | null;
  onerror: ((ev: never) => void) | null;
  onclose: ((ev: never) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike;
/** Constructors that take `ws`-style options (a third argument with `headers`). */
type HeaderWebSocketConstructor = new (
  url: string,
  protocols: string[],
  options: { headers: Record<string, string> },
) => WebSocketLike;

/** A token, or a function that fetches a fresh one (called again after close 4002 or HTTP 401 `token_expired`). */
export type TokenSource = string | (() => string | Promise<string>);

export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** What a UI shows about the connection; emitted on every change. */
export interface ConnectionStatus {
  readonly state: ConnectionState;
  readonly previous: ConnectionState;
  /** Close code of the socket that just ended (1006: dropped without a close frame). */
  readonly closeCode?: number;
  /** The hub's name for that code, e.g. `token_expired`. */
  readonly closeName?: string;
  readonly reason?: string;
  /** Why the connection is closed for good (`closed`), or why the last attempt failed. */
  readonly error?: EvaError;
  /** Reconnect attempts since the last successful connection (`reconnecting`). */
  readonly attempt?: number;
  /** Wait before the next attempt, ms (`reconnecting`). */
  readonly delayMs?: number;
}

export interface TransportOptions {
  url: string;
  codec: Codec;
  WebSocket: WebSocketConstructor;
  /** `frame`: an `auth` frame first (browsers). `header`: `Authorization` on the handshake (Node with `ws`). */
  auth: 'frame' | 'header';
  token: TokenSource;
  backoff: Required<BackoffOptions>;
  /** Socket open plus `welcome` must take at most this long. */
  connectTimeoutMs: number;
  /** Overrides the hub's `heartbeat_ms` for liveness checks. */
  heartbeatMs: number | undefined;
}

export interface TransportHandler {
  onWelcome(w: WelcomeFrame): void;
  /** A server frame, or a compact event frame (no `type`). */
  onFrame(f: IncomingFrame): void;
  onStatus(s: ConnectionStatus): void;
  /** The connection is closed for good. */
  onClosed(err: ConnectionClosedError | HandshakeError): void;
  /** A frame that could not be decoded (skipped). */
  onDecodeError(err: EvaError): void;
}

const OPEN = 1;

const ignore = (): void => undefined;

/** The `ws` package's extras: an EventEmitter with `terminate()`. */
interface NodeLikeWebSocket {
  on(event: 'unexpected-response', fn: (req: unknown, res: IncomingLike) => void): void;
  terminate(): void;
}
/** An `http.IncomingMessage`, as far as reading a small body goes. */
interface IncomingLike {
  readonly statusCode: number;
  setEncoding?(enc: string): void;
  on(event: 'data', fn: (chunk: string) => void): void;
  on(event: 'end' | 'error', fn: () => void): void;
}

/** `{"error":{"code","message"}}`, the hub's refusal body; undefined when it is not one. */
function errorBody(text: string): { code?: ErrorCode; message?: string } | undefined {
  try {
    const e = (JSON.parse(text) as { error?: { code?: ErrorCode; message?: string } } | null)?.error;
    return e !== undefined && e !== null && typeof e === 'object' ? e : undefined;
  } catch {
    return undefined;
  }
}

interface CloseLike {
  code?: number;
  reason?: string;
}
interface ErrorLike {
  message?: string;
  error?: { message?: string };
}
interface MessageLike {
  data: WireData;
}

export class Connection {
  private state: ConnectionState = 'closed';
  private ws: WebSocketLike | null = null;
  private welcomed = false;
  private attempt = 0;
  /** Bumped by every attempt and by close(): stale callbacks compare it. */
  private generation = 0;
  private token: string | undefined;
  /** Handshakes refused with `token_expired` since the last `welcome`. */
  private expiredRefusals = 0;
  private handshakeStatus: number | undefined;
  /** The hub's error body of a refused handshake (`ws` only: browsers cannot see it). */
  private handshakeError: { code?: ErrorCode; message?: string } | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private received = 0;
  private receivedAtLastTick = 0;
  private pingOutstanding = false;
  private nonce = 0;

  constructor(
    private readonly opts: TransportOptions,
    private readonly handler: TransportHandler,
  ) {}

  get current(): ConnectionState {
    return this.state;
  }

  /** Starts connecting (no-op unless closed). */
  open(): void {
    if (this.state !== 'closed') return;
    this.attempt = 0;
    this.setStatus({ state: 'connecting' });
    void this.connect();
  }

  /** Closes for good with 1000. */
  close(reason = 'closed by the client'): void {
    if (this.state === 'closed') return;
    this.generation += 1;
    this.teardown(1000, reason);
    const err = new ConnectionClosedError(1000, reason);
    this.setStatus({ state: 'closed', closeCode: 1000, closeName: closeCodeName(1000), reason, error: err });
    this.handler.onClosed(err);
  }

  /** Sends on the live socket; false when there is none (the caller keeps the frame). */
  send(frame: ClientFrame): boolean {
    const ws = this.ws;
    if (ws === null || !this.welcomed || ws.readyState !== OPEN) return false;
    ws.send(this.opts.codec.encode(frame));
    return true;
  }

  /** Drops the current socket as if the network had failed (tests, "reconnect now" buttons). */
  reconnect(reason = 'reconnect requested'): void {
    if (this.ws !== null) this.dropped(ABNORMAL_CLOSURE, reason);
  }

  private async connect(): Promise<void> {
    const gen = ++this.generation;
    this.handshakeStatus = undefined;
    this.handshakeError = undefined;
    this.welcomed = false;
    let token: string;
    try {
      token = await this.currentToken();
    } catch (cause) {
      if (gen !== this.generation) return;
      const err = new EvaError('token_unavailable', `the token provider failed: ${String(cause)}`);
      this.scheduleRetry(undefined, err.message, err);
      return;
    }
    if (gen !== this.generation) return;
    const { url, codec, auth } = this.opts;
    let ws: WebSocketLike;
    try {
      ws =
        auth === 'header'
          ? new (this.opts.WebSocket as unknown as HeaderWebSocketConstructor)(url, [codec.subprotocol], {
              headers: { Authorization: `Bearer ${token}` },
            })
          : new this.opts.WebSocket(url, [codec.subprotocol]);
    } catch (cause) {
      const err = new EvaError('connect_failed', `cannot open a WebSocket to ${url}: ${String(cause)}`);
      this.scheduleRetry(undefined, err.message, err);
      return;
    }
    this.ws = ws;
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => {
      if (auth === 'frame') ws.send(codec.encode({ type: 'auth', token }));
    };
    ws.onmessage = ((ev: MessageLike) => {
      if (this.ws === ws) this.onMessage(ev.data);
    }) as (ev: never) => void;
    ws.onerror = ((ev: ErrorLike) => {
      // `ws` reports a refused handshake only in its error message.
      const m = /Unexpected server response: (\d{3})/.exec(ev?.message ?? ev?.error?.message ?? '');
      if (m?.[1] !== undefined && this.ws === ws) this.handshakeStatus = Number(m[1]);
    }) as (ev: never) => void;
    ws.onclose = ((ev: CloseLike) => {
      if (this.ws === ws) this.dropped(ev?.code ?? ABNORMAL_CLOSURE, ev?.reason ?? '');
    }) as (ev: never) => void;
    this.readRefusals(ws);
    this.connectTimer = setTimeout(() => {
      if (this.ws === ws && !this.welcomed) this.dropped(ABNORMAL_CLOSURE, `no welcome within ${this.opts.connectTimeoutMs} ms`);
    }, this.opts.connectTimeoutMs);
  }

  /**
   * `ws` (Node) can show the HTTP answer of a refused handshake: its JSON
   * body says why (`token_expired` is worth a fresh token, `unauthorized`
   * is final). Reads it, then aborts the handshake, which closes the socket
   * as usual (1006) with the status and code known.
   */
  private readRefusals(ws: WebSocketLike): void {
    const emitter = ws as unknown as Partial<NodeLikeWebSocket>;
    if (typeof emitter.on !== 'function' || typeof emitter.terminate !== 'function') return;
    emitter.on('unexpected-response', (_req: unknown, res: IncomingLike) => {
      const chunks: string[] = [];
      const done = () => {
        if (this.ws !== ws) return;
        this.handshakeStatus = res.statusCode;
        this.handshakeError = errorBody(chunks.join(''));
        emitter.terminate?.();
      };
      res.setEncoding?.('utf8');
      res.on('data', (c: string) => {
        if (chunks.length < 64) chunks.push(String(c));
      });
      res.on('end', done);
      res.on('error', done);
    });
  }

  private async currentToken(): Promise<string> {
    const source = this.opts.token;
    if (typeof source === 'string') return source;
    if (this.token === undefined) {
      this.token = await source();
    }
    return this.token;
  }

  private onMessage(data: WireData): void {
    this.received += 1;
    let frame: IncomingFrame;
    try {
      frame = this.opts.codec.decode(data);
    } catch (cause) {
      this.handler.onDecodeError(new EvaError('bad_frame', `undecodable frame from the hub: ${String(cause)}`));
      return;
    }
    if (this.welcomed) {
      try {
        this.handler.onFrame(frame);
      } catch (cause) {
        // A frame shaped unlike this SDK expects (a newer hub?) must not
        // take the socket's message handling down with it.
        const what = 'type' in frame ? String(frame.type) : 'compact event';
        this.handler.onDecodeError(new EvaError('bad_frame', `cannot handle a ${what} frame: ${String(cause)}`));
      }
      return;
    }
    if (!('type' in frame) || frame.type !== 'welcome') {
      this.handler.onDecodeError(new EvaError('bad_frame', `expected welcome, got ${'type' in frame ? frame.type : 'a compact event frame'}`));
      return;
    }
    this.welcomed = true;
    this.attempt = 0;
    this.expiredRefusals = 0;
    clearTimeout(this.connectTimer);
    this.startHeartbeat(this.opts.heartbeatMs ?? frame.heartbeat_ms);
    this.setStatus({ state: 'connected' });
    this.handler.onWelcome(frame);
  }

  /**
   * Liveness: every interval without a single frame from the hub sends a
   * `ping`; a second silent interval means the socket is dead (a half-open
   * TCP connection never reports a close), so it is dropped and replaced.
   */
  private startHeartbeat(intervalMs: number): void {
    clearInterval(this.heartbeatTimer);
    if (!(intervalMs > 0)) return;
    this.receivedAtLastTick = this.received;
    this.pingOutstanding = false;
    this.heartbeatTimer = setInterval(() => {
      if (this.received !== this.receivedAtLastTick) {
        this.receivedAtLastTick = this.received;
        this.pingOutstanding = false;
        return;
      }
      if (this.pingOutstanding) {
        this.dropped(ABNORMAL_CLOSURE, `nothing heard from the hub for ${2 * intervalMs} ms`);
        return;
      }
      this.pingOutstanding = true;
      this.nonce += 1;
      this.send({ type: 'ping', nonce: this.nonce });
    }, intervalMs);
  }

  /** The current socket ended (or is abandoned): reconnect or stop, by the code. */
  private dropped(code: number, reason: string): void {
    const status = this.handshakeStatus;
    this.teardown(undefined, reason);
    if (status !== undefined) {
      this.refused(status);
      return;
    }
    if (!shouldReconnect(code)) {
      this.fail(new ConnectionClosedError(code, reason));
      return;
    }
    if (code === 4002) this.token = undefined; // expired: fetch a fresh one first
    this.scheduleRetry(code, reason);
  }

  /** An HTTP answer instead of an upgrade (visible in Node only). */
  private refused(status: number): void {
    const body = this.handshakeError;
    const err = new HandshakeError(status, body?.code, body?.message);
    if (body?.code === 'token_expired' && typeof this.opts.token === 'function' && ++this.expiredRefusals < 2) {
      // A genuine token that expired (a reconnect after a long outage, with
      // the token cached): ask the token function for a fresh one and try
      // again. A second expired token in a row is final (a clock or
      // provider problem that retrying does not fix); so is `unauthorized`.
      this.token = undefined;
      this.scheduleRetry(undefined, err.message, err);
    } else if (status === 429 || status >= 500) {
      this.scheduleRetry(undefined, err.message, err);
    } else {
      this.fail(err);
    }
  }

  private scheduleRetry(code: number | undefined, reason: string, error?: EvaError): void {
    const delayMs = backoffDelay(this.attempt, this.opts.backoff);
    this.attempt += 1;
    this.setStatus({
      state: 'reconnecting',
      ...(code !== undefined ? { closeCode: code, closeName: closeCodeName(code) } : {}),
      reason,
      ...(error ? { error } : {}),
      attempt: this.attempt,
      delayMs,
    });
    const gen = this.generation;
    this.retryTimer = setTimeout(() => {
      if (gen === this.generation) void this.connect();
    }, delayMs);
  }

  private fail(err: ConnectionClosedError | HandshakeError): void {
    this.generation += 1;
    const close =
      err instanceof ConnectionClosedError
        ? { closeCode: err.closeCode, closeName: err.closeName, reason: err.reason }
        : { reason: err.message };
    this.setStatus({ state: 'closed', ...close, error: err });
    this.handler.onClosed(err);
  }

  /** Forgets the current socket and its timers; closes it if still open. */
  private teardown(code: number | undefined, reason: string): void {
    clearTimeout(this.retryTimer);
    clearTimeout(this.connectTimer);
    clearInterval(this.heartbeatTimer);
    const ws = this.ws;
    this.ws = null;
    this.welcomed = false;
    if (ws === null) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    // Not null: `ws` (Node) reports closing a socket that is still opening
    // as an `error` event a tick later, and an EventEmitter without an
    // `error` listener throws it as an uncaught exception.
    ws.onerror = ignore;
    try {
      // `ws` can drop a dead socket at once; the standard API can only
      // start a closing handshake, which a dead peer never finishes (no
      // matter: nothing listens to this socket any more).
      const terminate = (ws as { terminate?: () => void }).terminate;
      if (code === undefined && typeof terminate === 'function') terminate.call(ws);
      else ws.close(code ?? 1000, reason.slice(0, 120));
    } catch {
      // already closed
    }
  }

  private setStatus(s: Omit<ConnectionStatus, 'previous'>): void {
    const previous = this.state;
    this.state = s.state;
    this.handler.onStatus({ ...s, previous });
  }
}
