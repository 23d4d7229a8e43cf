// Every failure the SDK reports is one of these classes, each with a
// machine-readable `code`, so apps can branch without parsing messages.
import { closeCodeName, shouldReconnect } from './closecodes.js';
import { RETRYABLE_ERROR_CODES, type ErrorCode } from './protocol.gen.js';
import type { ErrorFrame } from './protocol.js';

export class EvaError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * The hub refused something: an `error` frame on the WebSocket, or a REST
 * error body (`{"error":{code,message,retry_after_ms?}}`).
 */
export class HubError extends EvaError {
  declare readonly code: ErrorCode;
  /** Wait at least this long before retrying (retryable codes). */
  readonly retryAfterMs: number | undefined;
  /** The client frame id the error answers, if any. */
  readonly id: string | undefined;
  /** The session the failed frame named, if any. */
  readonly session: string | undefined;
  /** The HTTP status, for REST errors. */
  readonly status: number | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    extra: { retryAfterMs?: number | null; id?: string | null; session?: string | null; status?: number } = {},
  ) {
    super(code, message);
    this.retryAfterMs = extra.retryAfterMs ?? undefined;
    this.id = extra.id ?? undefined;
    this.session = extra.session ?? undefined;
    this.status = extra.status;
  }

  /** True for codes the protocol marks as worth retrying (`x-retryable`). */
  get retryable(): boolean {
    return RETRYABLE_ERROR_CODES.includes(this.code);
  }

  static fromFrame(f: ErrorFrame): HubError {
    return new HubError(f.code, f.message, { retryAfterMs: f.retry_after_ms, id: f.id, session: f.session });
  }
}

/**
 * The connection ended for good: a final close code, `close()` (1000), or
 * a refused handshake. Pending frames are rejected with it: they are not
 * known to be stored; resend them with the same id (`frameId`) once
 * connected again and the hub will not store them twice.
 */
export class ConnectionClosedError extends EvaError {
  readonly closeName: string;
  /** The id of the frame this rejection is for, when it rejects a send. */
  frameId: string | undefined;

  constructor(
    readonly closeCode: number,
    readonly reason: string,
  ) {
    super('connection_closed', `connection closed with ${closeCode} (${closeCodeName(closeCode)})${reason ? `: ${reason}` : ''}`);
    this.closeName = closeCodeName(closeCode);
  }

  /** Whether the code alone would have allowed a reconnect (false for final codes). */
  get reconnectable(): boolean {
    return shouldReconnect(this.closeCode);
  }

  forFrame(id: string): ConnectionClosedError {
    const e = new ConnectionClosedError(this.closeCode, this.reason);
    e.frameId = id;
    return e;
  }
}

/**
 * The hub refused the WebSocket handshake with an HTTP status (Node only:
 * browsers cannot see it). `hubCode` is the code of the hub's error body
 * when it sent one: `unauthorized` (final), `token_expired` (the client
 * fetched a fresh token from its token function, or could not),
 * `forbidden`, `rate_limited`...
 */
export class HandshakeError extends EvaError {
  constructor(
    readonly status: number,
    readonly hubCode?: ErrorCode,
    readonly hubMessage?: string,
  ) {
    super(
      'handshake_refused',
      `the hub refused the WebSocket handshake with HTTP ${status}${hubCode ? ` ${hubCode}` : ''}${hubMessage ? `: ${hubMessage}` : ''}`,
    );
  }
}

/** No ack arrived within the `timeoutMs` a send asked for. Not known to be stored: resend with the same id. */
export class AckTimeoutError extends EvaError {
  constructor(readonly frameId: string) {
    super('ack_timeout', `no ack for frame ${frameId} in time; it is not known to be stored`);
  }
}

/** The session was left (or the join failed) while this frame waited for its ack. */
export class SessionLeftError extends EvaError {
  constructor(
    readonly session: string,
    readonly frameId?: string,
  ) {
    super('session_left', `session ${session} was left before the frame was acknowledged`);
  }
}
