// The tenant's sessions, for the console's list: `list_sessions` on the
// console's own connection (`EvaClient.listSessions`), every few seconds
// and after every reconnect. The sessions' live state comes from the same
// connection, which joins them.
import { HubError, type EvaClient } from '@eva-hub/client';
import type { Summary } from './watch.js';

export interface ListerOptions {
  client: EvaClient;
  /** A fresh list (newest first). */
  onList: (sessions: Summary[]) => void;
  /** Why the list cannot be had right now (null: it can). */
  onProblem: (problem: string | null) => void;
  intervalMs?: number;
}

export class SessionLister {
  private poll: ReturnType<typeof setInterval> | undefined;
  private offWelcome: (() => void) | undefined;
  private inFlight = false;
  private stopped = true;

  constructor(private readonly opts: ListerOptions) {}

  start(): void {
    this.stopped = false;
    // Asked again on every reconnect: the list may have changed meanwhile.
    this.offWelcome = this.opts.client.on('welcome', () => this.refresh());
    this.poll = setInterval(() => this.refresh(), this.opts.intervalMs ?? 4000);
    this.refresh();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.poll);
    this.offWelcome?.();
    this.offWelcome = undefined;
  }

  /** Asks now (e.g. after the operator pressed "refresh"); a no-op while offline or while a request is out. */
  refresh(): void {
    const client = this.opts.client;
    if (this.stopped || this.inFlight || client.state !== 'connected') return;
    this.inFlight = true;
    client
      .listSessions({ limit: 200 })
      .then(
        (sessions) => {
          if (this.stopped) return;
          this.opts.onProblem(null);
          this.opts.onList(sessions);
        },
        (err: unknown) => {
          if (this.stopped) return;
          if (err instanceof HubError) {
            this.opts.onProblem(err.code === 'forbidden' ? 'this token may not list sessions' : `session list unavailable: ${err.message}`);
          }
          // Anything else is a lost connection: the next welcome asks again,
          // and the connection status already tells the operator.
        },
      )
      .finally(() => {
        this.inFlight = false;
      });
  }
}
