// Frames that carry an `id` and wait for the hub's `ack` (sent once the
// rows they produced have committed). Each waits here until acked, so it
// can be sent again, with the same id, after a reconnect: the hub answers
// a resend with the original ack and `duplicate: true`, never a second
// row. Retryable refusals (`rate_limited`, `backlog_full`, `unavailable`,
// `internal`) are resent after `retry_after_ms`, a bounded number of times.
import { backoffDelay, type BackoffOptions } from './backoff.js';
import { AckTimeoutError, type EvaError, type HubError } from './errors.js';
import type { AckFrame, SessionFrame } from './protocol.js';

export interface SendOptions {
  /**
   * The frame's id (1-64 bytes, unique per sender and session, forever).
   * Default: a fresh random one. Pass your own to resend a frame whose
   * outcome you did not learn (e.g. after a final close or a restart).
   */
  id?: string;
  /** Reject with AckTimeoutError if no ack arrives in this many ms (the frame may still be stored). */
  timeoutMs?: number;
}

interface Entry {
  readonly session: string;
  readonly frame: SessionFrame & { id: string };
  readonly resolve: (ack: AckFrame) => void;
  readonly reject: (err: EvaError) => void;
  retries: number;
  /** A retry is scheduled: do not resend before it fires. */
  waiting: ReturnType<typeof setTimeout> | undefined;
  timeout: ReturnType<typeof setTimeout> | undefined;
}

export interface PendingOptions {
  /** Resends after retryable errors before the promise rejects. */
  maxRetries: number;
  backoff: Required<BackoffOptions>;
}

export class PendingFrames {
  private readonly entries = new Map<string, Entry>();

  constructor(
    /** Sends a frame now if its session is joined on a live connection; false otherwise. */
    private readonly transmit: (session: string, frame: SessionFrame) => boolean,
    private readonly opts: PendingOptions,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Registers the frame and sends it if possible; the promise settles on its ack or error. */
  add(frame: SessionFrame & { id: string }, opts: SendOptions | undefined): Promise<AckFrame> {
    const id = frame.id;
    if (this.entries.has(id)) return Promise.reject(new TypeError(`frame id ${id} is already waiting for an ack`));
    return new Promise<AckFrame>((resolve, reject) => {
      const entry: Entry = { session: frame.session, frame, resolve, reject, retries: 0, waiting: undefined, timeout: undefined };
      this.entries.set(id, entry);
      if (opts?.timeoutMs !== undefined) {
        entry.timeout = setTimeout(() => this.settle(id)?.reject(new AckTimeoutError(id)), opts.timeoutMs);
      }
      this.transmit(entry.session, frame);
    });
  }

  /** An ack for one of ours; false if the id is unknown (a late duplicate). */
  ack(f: AckFrame): boolean {
    const entry = this.settle(f.id);
    entry?.resolve(f);
    return entry !== undefined;
  }

  /** An error for one of ours: retried or rejected. False if the id is unknown. */
  error(err: HubError): boolean {
    if (err.id === undefined) return false;
    const entry = this.entries.get(err.id);
    if (entry === undefined) return false;
    if (err.retryable && entry.retries < this.opts.maxRetries) {
      const delay = Math.max(err.retryAfterMs ?? 0, backoffDelay(entry.retries, this.opts.backoff));
      entry.retries += 1;
      entry.waiting = setTimeout(() => {
        entry.waiting = undefined;
        if (this.entries.get(err.id as string) === entry) this.transmit(entry.session, entry.frame);
      }, delay);
      return true;
    }
    this.settle(err.id)?.reject(err);
    return true;
  }

  /** Sends again every frame of a session that waits for an ack (after it was joined again). */
  resend(session: string): void {
    for (const entry of this.entries.values()) {
      if (entry.session === session && entry.waiting === undefined) this.transmit(session, entry.frame);
    }
  }

  /** Rejects every frame of a session (it was left, or its join failed for good). */
  rejectSession(session: string, make: (id: string) => EvaError): void {
    for (const [id, entry] of this.entries) {
      if (entry.session === session) this.settle(id)?.reject(make(id));
    }
  }

  /** Rejects everything (the connection closed for good). */
  rejectAll(make: (id: string) => EvaError): void {
    for (const id of [...this.entries.keys()]) this.settle(id)?.reject(make(id));
  }

  private settle(id: string): Entry | undefined {
    const entry = this.entries.get(id);
    if (entry === undefined) return undefined;
    this.entries.delete(id);
    clearTimeout(entry.waiting);
    clearTimeout(entry.timeout);
    return entry;
  }
}
