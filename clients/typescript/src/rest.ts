// The hub's REST API for backends: sessions, connection tokens, app
// events and history. Uses the global `fetch` (browsers, Node >= 18).
// Every non-2xx answer becomes a HubError with the body's code, message
// and retry_after_ms, and the HTTP status.
import { HubError } from './errors.js';
import type { ErrorCode, SessionStatus } from './protocol.js';
import type {
  CreatedKey,
  EventAccepted,
  EventBody,
  IssuedToken,
  Job,
  JobChange,
  JobStatus,
  KeyList,
  KeyRequest,
  Listing_AlertRow,
  Listing_ConversationRow,
  Listing_InterventionRow,
  Listing_Job,
  Listing_SessionView,
  NewJob,
  NewSession,
  SessionView,
  TokenRequest,
} from './rest.gen.js';

// The bodies are generated from docs/openapi.json (src/rest.gen.ts); these
// are the names the SDK has always exported for them.
export type {
  AlertRow,
  ConversationRow,
  CreatedKey,
  EventAccepted,
  EventBody,
  InterventionRow,
  IssuedToken,
  Job,
  JobChange,
  JobStatus,
  KeyList,
  KeyRequest,
  KeyView,
  Listing_Job,
  LiveView,
  NewJob,
  NewSession,
  TokenRequest,
} from './rest.gen.js';

/** A session as REST shows it (the stored record, plus `live` while it is loaded). Timestamps are RFC 3339 strings. */
export type SessionInfo = SessionView;

/** One page of a listing, newest first: the shape every `Listing_*` body has. */
export interface Page<T> {
  items: T[];
  /** Pass as `before` to get the next (older) page; absent (or null) on the last one. */
  next_before?: string | null;
}

export interface PageQuery {
  /** The last item's id (a page's `next_before`); null or absent for the first page. */
  before?: string | null;
  limit?: number;
}

export interface RestOptions {
  /** The hub's base URL, e.g. `https://hub.example.com`. */
  baseUrl: string;
  /** An API key (`Authorization: Bearer`); not needed in `--dev`. */
  apiKey?: string;
  fetch?: typeof fetch;
}

export class HubRest {
  private readonly base: string;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly opts: RestOptions) {
    this.base = opts.baseUrl.replace(/\/+$/, '');
    this.fetchImpl = opts.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** `POST /v1/sessions` (201). */
  createSession(body: NewSession = {}): Promise<SessionInfo> {
    return this.call('POST', '/v1/sessions', body);
  }

  getSession(id: string): Promise<SessionInfo> {
    return this.call('GET', `/v1/sessions/${enc(id)}`);
  }

  /** Newest first. */
  listSessions(q: PageQuery & { status?: SessionStatus } = {}): Promise<Listing_SessionView> {
    return this.call('GET', `/v1/sessions${query(q)}`);
  }

  /** Ends a session (`stopping`, or `stopped` without a renderer). */
  stopSession(id: string, reason?: string): Promise<SessionInfo> {
    return this.call('POST', `/v1/sessions/${enc(id)}/stop`, reason === undefined ? {} : { reason });
  }

  setStatus(id: string, status: SessionStatus, reason?: string): Promise<SessionInfo> {
    return this.call('POST', `/v1/sessions/${enc(id)}/status`, { status, ...(reason === undefined ? {} : { reason }) });
  }

  /** Publishes an app-defined event into a session's stream (202). */
  postEvent(id: string, event: EventBody): Promise<EventAccepted> {
    return this.call('POST', `/v1/sessions/${enc(id)}/events`, event);
  }

  /** Mints a connection token for a participant, operator or renderer. */
  mintToken(req: TokenRequest): Promise<IssuedToken> {
    return this.call('POST', '/v1/tokens', req);
  }

  conversation(id: string, q: PageQuery = {}): Promise<Listing_ConversationRow> {
    return this.call('GET', `/v1/sessions/${enc(id)}/conversation${query(q)}`);
  }

  interventions(id: string, q: PageQuery = {}): Promise<Listing_InterventionRow> {
    return this.call('GET', `/v1/sessions/${enc(id)}/interventions${query(q)}`);
  }

  alerts(id: string, q: PageQuery = {}): Promise<Listing_AlertRow> {
    return this.call('GET', `/v1/sessions/${enc(id)}/alerts${query(q)}`);
  }

  /**
   * `POST /v1/jobs` (201): a job, `pending` at 0 %. Watch it by joining
   * its `stream`; without `session` that is a session of the job's own,
   * open to its `owner` and the tenant's operators.
   */
  createJob(body: NewJob): Promise<Job> {
    return this.call('POST', '/v1/jobs', body);
  }

  /**
   * `PATCH /v1/jobs/{id}`: answered once stored. Progress only grows and a
   * finished job does not change (`conflict`, HTTP 409).
   */
  updateJob(id: string, change: JobChange): Promise<Job> {
    return this.call('PATCH', `/v1/jobs/${enc(id)}`, change);
  }

  getJob(id: string): Promise<Job> {
    return this.call('GET', `/v1/jobs/${enc(id)}`);
  }

  /** Newest first. */
  listJobs(q: PageQuery & { status?: JobStatus; type?: string } = {}): Promise<Listing_Job> {
    return this.call('GET', `/v1/jobs${query(q)}`);
  }

  /** Creates an API key (`eva:admin`); `key` is shown this once. */
  createKey(req: KeyRequest): Promise<CreatedKey> {
    return this.call('POST', '/v1/keys', req);
  }

  /** The tenant's keys, without their values (`eva:admin`). */
  listKeys(): Promise<KeyList> {
    return this.call('GET', '/v1/keys');
  }

  /** Revokes a key (`eva:admin`, 204). */
  async revokeKey(id: string): Promise<void> {
    await this.call('DELETE', `/v1/keys/${enc(id)}`);
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.opts.apiKey !== undefined) headers.authorization = `Bearer ${this.opts.apiKey}`;
    const res = await this.fetchImpl(this.base + path, {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    const parsed: unknown = text === '' ? undefined : safeJson(text);
    if (!res.ok) throw restError(res, parsed, text);
    return parsed as T;
  }
}

function restError(res: Response, body: unknown, text: string): HubError {
  const e = (body as { error?: { code?: ErrorCode; message?: string; retry_after_ms?: number } } | undefined)?.error;
  const header = res.headers.get('retry-after');
  const retryAfterMs = e?.retry_after_ms ?? (header !== null && /^\d+$/.test(header) ? Number(header) * 1000 : undefined);
  return new HubError(e?.code ?? (res.status >= 500 ? 'unavailable' : 'invalid'), e?.message ?? (text || `HTTP ${res.status}`), {
    status: res.status,
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
  });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function enc(id: string): string {
  return encodeURIComponent(id);
}

function query(q: object): string {
  const parts = Object.entries(q as Record<string, string | number | null | undefined>)
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`);
  return parts.length > 0 ? `?${parts.join('&')}` : '';
}
