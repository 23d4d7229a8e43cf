// What both pages need from the hub besides the SDK: its config, the
// WebSocket address, wording for connection states and refusals, and the
// fields newer hubs send that this SDK version does not type yet.
import type { ConnectionStatus, EvaError } from '@eva-hub/client';

export interface HubConfig {
  /** The hub runs with --dev: development tokens (`dev:<role>:<subject>`) are accepted. */
  dev: boolean;
  version?: string;
}

/** `/console/config.json`; a hub that does not answer is treated as not in dev mode. */
export async function loadConfig(): Promise<HubConfig> {
  try {
    const res = await fetch('/console/config.json', { cache: 'no-cache', credentials: 'omit' });
    if (!res.ok) return { dev: false };
    const body = (await res.json()) as Partial<HubConfig>;
    return { dev: body.dev === true, ...(body.version ? { version: body.version } : {}) };
  } catch {
    return { dev: false };
  }
}

/** The hub's WebSocket endpoint on the origin that served the page. */
export function hubUrl(): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/v1/ws`;
}

/** Close codes people see, in words. */
const CLOSE_WORDS: Record<number, string> = {
  1000: 'closed',
  1006: 'the connection was lost',
  1011: 'the hub had an unexpected failure',
  1012: 'the hub is restarting',
  4000: 'this page fell behind',
  4001: 'the hub heard nothing from this page',
  4002: 'the token expired',
  4003: 'too many requests',
  4004: 'too many connections for this account',
  4500: 'the page sent frames the hub could not read',
  4501: 'the hub refused the token (missing or invalid)',
  4502: 'the token does not allow this',
  4503: 'the page did not authenticate in time',
  4505: 'the session has ended',
};

export function closeWords(code: number | undefined): string {
  if (code === undefined) return 'the hub cannot be reached';
  return CLOSE_WORDS[code] ?? `closed with code ${code}`;
}

/** One line for a connection state: what a banner says. */
export function describeStatus(s: ConnectionStatus): string {
  switch (s.state) {
    case 'connecting':
      return 'Connecting…';
    case 'connected':
      return 'Connected';
    case 'reconnecting': {
      const why = s.closeCode !== undefined ? closeWords(s.closeCode) : 'the hub cannot be reached';
      const next = s.delayMs !== undefined ? `, next try in ${(s.delayMs / 1000).toFixed(1)} s` : '';
      return `Reconnecting (${why}; attempt ${s.attempt ?? 1}${next})`;
    }
    case 'closed':
      return `Closed: ${closedReason(s)}`;
  }
}

export function closedReason(s: ConnectionStatus): string {
  if (s.closeCode !== undefined) return closeWords(s.closeCode);
  return errorWords(s.error) ?? s.reason ?? 'closed';
}

export function errorWords(e: EvaError | undefined | unknown): string | undefined {
  if (e === undefined || e === null) return undefined;
  const err = e as { code?: string; message?: string; retryAfterMs?: number };
  switch (err.code) {
    case 'rate_limited':
      return `too many requests; try again in ${Math.ceil((err.retryAfterMs ?? 1000) / 1000)} s`;
    case 'forbidden':
      return 'your token does not allow this';
    case 'not_controller':
      return 'only the operator who took the session over may do this';
    case 'conflict':
      return 'another operator holds the session';
    case 'session_ended':
      return 'the session has ended';
    case 'not_found':
      return 'no such session';
    case 'unknown_reference':
      return 'that response is no longer known to the hub';
    case 'illegal_transition':
      return 'not possible in the session’s current state';
    case 'connection_closed':
      return 'the connection closed before the hub answered';
    default:
      return err.message ?? String(e);
  }
}

/** A question as a staff snapshot lists it (hubs newer than the SDK's types). */
export interface SnapshotQuestion {
  question_id: string;
  participant_id: string;
  participant_name?: string | null;
  text: string;
  asked_at: number;
}

/** A command or stop the renderer has not acknowledged (staff snapshots). */
export interface SnapshotPendingCommand {
  command_id: string;
  operator_id: string;
  emergency: boolean;
  reason?: string | null;
  issued_at: number;
}

/** The snapshot fields the SDK's generated types may not have yet. */
export function snapshotExtras(s: unknown): { questions: SnapshotQuestion[]; pending: SnapshotPendingCommand[] } {
  const x = s as { questions?: SnapshotQuestion[] | null; pending_commands?: SnapshotPendingCommand[] | null };
  return { questions: x.questions ?? [], pending: x.pending_commands ?? [] };
}

/** A bounded, insertion-ordered set of ids (for "seen it already" checks). */
export class RecentIds {
  private readonly set = new Set<string>();
  constructor(private readonly max = 1000) {}
  has(id: string): boolean {
    return this.set.has(id);
  }
  add(id: string): void {
    if (this.set.has(id)) return;
    this.set.add(id);
    if (this.set.size > this.max) {
      const first = this.set.values().next().value;
      if (first !== undefined) this.set.delete(first);
    }
  }
}
