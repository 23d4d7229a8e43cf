/* Generated from docs/openapi.json by scripts/gen-types.mjs (npm run gen:types). Do not edit. */

/**
 * Any body of the hub's REST API (eva-hub 0.1.0, OpenAPI 3.1.0).
 */
export type RestBody =
  | AlertRow
  | AlertType
  | ConversationRow
  | Counters
  | CreatedKey
  | CreatedWebhook
  | CustomAudience
  | DeliveryPage
  | DeliveryRecord
  | DeliveryStatus
  | Epoch
  | ErrorBody
  | ErrorCode
  | ErrorDetail
  | EventAccepted
  | EventBody
  | EventId
  | IngestAnswer
  | InterventionRow
  | InterventionType
  | IssuedToken
  | Job
  | JobChange
  | JobId
  | JobStatus
  | KeyList
  | KeyRequest
  | KeyView
  | Listing_AlertRow
  | Listing_ConversationRow
  | Listing_InterventionRow
  | Listing_Job
  | Listing_SessionView
  | LiveView
  | MessageType
  | NewJob
  | NewSession
  | NewWebhook
  | ProcessedEvent
  | ReasonBody
  | ReplayAccepted
  | ReplayRequest
  | Role
  | SessionId
  | SessionRecord
  | SessionState
  | SessionStatus
  | SessionView
  | Severity
  | StatusBody
  | StreamPosition
  | TenantId
  | TokenRequest
  | WebhookChange
  | WebhookList
  | WebhookView;
export type EventId = string;
export type SessionId = string;
/**
 * Closed set of alert types the hub raises.
 */
export type AlertType =
  "renderer_heartbeat_lost" | "emergency_stop_unacknowledged" | "metric_threshold" | "webhook_disabled";
export type Severity = "info" | "warning" | "error" | "critical";
export type MessageType = "question" | "response" | "system" | "operator";
/**
 * A new key: its listing, plus the key itself, shown this once.
 */
export type CreatedKey = KeyView & {
  /**
   * `evk_…`: store it now; the hub keeps only its SHA-256.
   */
  key: string;
};
export type TenantId = string;
/**
 * A new endpoint, with its signing secret: shown this once.
 */
export type CreatedWebhook = WebhookView & {
  /**
   * `whsec_…`: verify each request's `webhook-signature` with it
   * (Standard Webhooks). The hub never shows it again.
   */
  secret: string;
};
/**
 * Audience a renderer, operator or backend picks for an app-defined event.
 */
export type CustomAudience = "all" | "staff" | "operators" | "renderer";
export type DeliveryStatus = "pending" | "delivered" | "failed";
/**
 * One incarnation of a session's stream: 16 lowercase hex digits.
 */
export type Epoch = string;
/**
 * Codes carried by `error` frames. An error frame never closes the
 * connection by itself.
 */
export type ErrorCode =
  | "bad_frame"
  | "unknown_type"
  | "invalid"
  | "unauthorized"
  | "token_expired"
  | "forbidden"
  | "not_found"
  | "not_joined"
  | "already_joined"
  | "renderer_active"
  | "stale_renderer"
  | "illegal_transition"
  | "conflict"
  | "not_controller"
  | "unknown_reference"
  | "session_ended"
  | "rate_limited"
  | "quota_exceeded"
  | "backlog_full"
  | "unavailable"
  | "internal";
/**
 * The answer: the stored event, whether it was a redelivery, and the
 * hub events it produced.
 */
export type IngestAnswer = ProcessedEvent & {
  /**
   * True when an event with the same hash was stored before: nothing
   * was published this time.
   */
  duplicate: boolean;
  /**
   * The `seq` of each event published into the session.
   */
  published: number[];
};
export type InterventionType = "takeover" | "suggestion" | "correction" | "emergency_stop";
export type JobId = string;
/**
 * Where a job is in its life. `completed`, `failed` and `cancelled` are
 * terminal: nothing changes a job after them.
 */
export type JobStatus = "pending" | "processing" | "completed" | "failed" | "cancelled";
/**
 * Session lifecycle (seed 000 `sessions.status`).
 *
 * ```text
 * created → starting → active ⇄ paused → stopping → stopped
 *              └──────────┴────────┴─────────┴──→ failed
 * ```
 */
export type SessionStatus = "created" | "starting" | "active" | "paused" | "stopping" | "stopped" | "failed";
/**
 * What a connection is. Fixed for the life of the connection.
 */
export type Role = "renderer" | "operator" | "participant";
/**
 * A session as REST shows it: the stored record plus what only the live
 * replica knows.
 */
export type SessionView = SessionRecord & {
  live?: LiveView | null;
};

/**
 * Seed 000 `system_alerts`.
 */
export interface AlertRow {
  id: EventId;
  session_id: SessionId;
  alert_type: AlertType;
  severity: Severity;
  title: string;
  message: string;
  component?: string | null;
  metadata: unknown;
  created_at: string;
  acknowledged: boolean;
  acknowledged_by?: string | null;
  acknowledged_at?: string | null;
}
/**
 * Seed 000 `conversations`, plus the event's stream position and the
 * sender's frame id. The position is only unique within one epoch of the
 * stream (it starts again after a single-node restart), so the
 * idempotency key is the row id and `(session, type, sender, client id)`.
 */
export interface ConversationRow {
  id: EventId;
  session_id: SessionId;
  seq: number;
  participant_id?: string | null;
  message_type: MessageType;
  content: string;
  speaker?: string | null;
  timestamp: string;
  confidence_score?: number | null;
  response_time_ms?: number | null;
  context: unknown;
  metadata: unknown;
  client_msg_id?: string | null;
}
/**
 * Session counters (seed 000 `sessions`).
 */
export interface Counters {
  participant_count: number;
  questions_received: number;
  operator_interventions: number;
  error_count: number;
}
/**
 * A key as it is listed: everything but the hash.
 */
export interface KeyView {
  id: string;
  tenant: TenantId;
  name: string;
  scopes: string[];
  created_at: string;
  expires_at?: string | null;
  last_used?: string | null;
  active: boolean;
}
/**
 * An endpoint as the API shows it: everything but the secret.
 */
export interface WebhookView {
  id: string;
  url: string;
  /**
   * Event types, or `["*"]` for all.
   */
  events: string[];
  description?: string | null;
  /**
   * False once disabled (by a PATCH, or by the hub after
   * `webhooks.disable_after_failures` failed attempts in a row).
   */
  is_active: boolean;
  /**
   * Retries after the first attempt.
   */
  retry_count: number;
  /**
   * Per attempt.
   */
  timeout_seconds: number;
  last_triggered?: string | null;
  /**
   * Failed attempts since the last successful one.
   */
  failure_count: number;
  /**
   * Why the hub disabled it.
   */
  disabled_reason?: string | null;
  created_at: string;
}
/**
 * A page of deliveries, newest first.
 */
export interface DeliveryPage {
  items: DeliveryRecord[];
  /**
   * Pass as `before` for the next page; absent on the last page.
   */
  next_before?: number | null;
}
/**
 * One delivery of one event to one endpoint (`webhook_deliveries`).
 */
export interface DeliveryRecord {
  /**
   * Increasing with creation.
   */
  id: number;
  webhook_id: string;
  /**
   * The `webhook-id` header: the same for every attempt and replay.
   */
  msg_id: string;
  /**
   * 0 for the original delivery, 1, 2, … for replays.
   */
  replay: number;
  event_type: string;
  /**
   * The request body.
   */
  body: string;
  status: DeliveryStatus;
  /**
   * Attempts made so far.
   */
  attempts: number;
  next_attempt_at: string;
  /**
   * When the delivery was queued (the event, or the replay request).
   */
  created_at: string;
  last_attempt_at?: string | null;
  delivered_at?: string | null;
  /**
   * The HTTP status of the last answer, if one came.
   */
  response_status?: number | null;
  /**
   * Why the last attempt failed.
   */
  last_error?: string | null;
}
/**
 * Every error answer: `{"error": {...}}`.
 */
export interface ErrorBody {
  error: ErrorDetail;
}
export interface ErrorDetail {
  code: ErrorCode;
  /**
   * For people; say what to do, never quote a backend.
   */
  message: string;
  /**
   * For retryable codes: wait at least this long (also in `Retry-After`,
   * in seconds).
   */
  retry_after_ms?: number | null;
}
/**
 * Where a published event landed in the session's stream.
 */
export interface EventAccepted {
  session: SessionId;
  seq: number;
}
export interface EventBody {
  /**
   * 1-64 characters of `a-z 0-9 _ . : -`, starting with a letter.
   */
  name: string;
  audience?: CustomAudience;
  /**
   * Any JSON value.
   */
  data?: unknown;
}
/**
 * One inbound event, as stored (`processed_webhook_events`).
 */
export interface ProcessedEvent {
  id: string;
  /**
   * `tavus`, `heygen`, `livekit` or `generic`.
   */
  source: string;
  /**
   * The vendor's conversation id (a LiveKit room name, a HeyGen
   * streaming session id).
   */
  conversation_id: string;
  /**
   * The vendor's name for the event, as received.
   */
  event_type: string;
  /**
   * The event as received.
   */
  event_data: {};
  /**
   * Lowercase hex SHA-256 of the canonical event (docs/INGEST.md).
   */
  event_hash: string;
  session?: SessionId | null;
  processed_at: string;
  /**
   * From receipt of the request until the event was recorded
   * (verification, parsing, the session lookup).
   */
  processing_duration_ms: number;
}
/**
 * Seed 000 `operator_interventions`. `operator_id` is the operator's
 * subject.
 */
export interface InterventionRow {
  id: EventId;
  session_id: SessionId;
  seq: number;
  operator_id: string;
  intervention_type: InterventionType;
  trigger_reason?: string | null;
  action_taken: string;
  created_at: string;
  ended_at?: string | null;
  duration_seconds?: number | null;
  client_msg_id?: string | null;
}
/**
 * A minted connection token. Shown to the backend once; the hub keeps no
 * copy.
 */
export interface IssuedToken {
  token: string;
  token_type: string;
  /**
   * Unix seconds; `None` for development tokens, which never expire.
   */
  expires_at?: number | null;
}
/**
 * A job as stored and as every client sees it.
 */
export interface Job {
  id: JobId;
  tenant: TenantId;
  /**
   * `voice_clone`, `persona_extract`, `rag_ingest`... (1–50 bytes).
   */
  type: string;
  status: JobStatus;
  /**
   * 0–100; never goes down.
   */
  progress: number;
  /**
   * Who the job is for (seed 004 `user_id`): a connection whose subject
   * this is may watch it, beside the tenant's operators.
   */
  owner?: string | null;
  session?: SessionId | null;
  /**
   * The session whose stream carries the job's `job` events: `session`
   * when given, else a stream of the job's own. Join it to watch.
   */
  stream: SessionId;
  /**
   * The job's input, as given at creation.
   */
  metadata: {};
  /**
   * The output, once `completed`.
   */
  result?: {} | null;
  /**
   * What went wrong, once `failed` (e.g. `{"code": ..., "message": ...}`).
   */
  error?: {} | null;
  created_at: string;
  updated_at: string;
  /**
   * First moved to `processing`.
   */
  started_at?: string | null;
  completed_at?: string | null;
  /**
   * Failed or cancelled.
   */
  failed_at?: string | null;
}
/**
 * A change to a job (`PATCH /v1/jobs/{id}`); absent fields stay.
 */
export interface JobChange {
  status?: JobStatus | null;
  progress?: number | null;
  result?: {} | null;
  error?: {} | null;
}
/**
 * The tenant's keys.
 */
export interface KeyList {
  items: KeyView[];
}
export interface KeyRequest {
  name: string;
  /**
   * Any of `eva:read`, `eva:write`, `eva:operate`, `eva:admin`.
   */
  scopes: string[];
  expires_at?: string | null;
}
/**
 * A page of a listing, newest first.
 */
export interface Listing_AlertRow {
  /**
   * Items: Seed 000 `system_alerts`.
   */
  items: {
    id: EventId;
    session_id: SessionId;
    alert_type: AlertType;
    severity: Severity;
    title: string;
    message: string;
    component?: string | null;
    metadata: unknown;
    created_at: string;
    acknowledged: boolean;
    acknowledged_by?: string | null;
    acknowledged_at?: string | null;
  }[];
  /**
   * Pass as `before` to get the next page; absent on the last page.
   */
  next_before?: string | null;
}
/**
 * A page of a listing, newest first.
 */
export interface Listing_ConversationRow {
  /**
   * Items: Seed 000 `conversations`, plus the event's stream position and the
   * sender's frame id. The position is only unique within one epoch of the
   * stream (it starts again after a single-node restart), so the
   * idempotency key is the row id and `(session, type, sender, client id)`.
   */
  items: {
    id: EventId;
    session_id: SessionId;
    seq: number;
    participant_id?: string | null;
    message_type: MessageType;
    content: string;
    speaker?: string | null;
    timestamp: string;
    confidence_score?: number | null;
    response_time_ms?: number | null;
    context: unknown;
    metadata: unknown;
    client_msg_id?: string | null;
  }[];
  /**
   * Pass as `before` to get the next page; absent on the last page.
   */
  next_before?: string | null;
}
/**
 * A page of a listing, newest first.
 */
export interface Listing_InterventionRow {
  /**
   * Items: Seed 000 `operator_interventions`. `operator_id` is the operator's
   * subject.
   */
  items: {
    id: EventId;
    session_id: SessionId;
    seq: number;
    operator_id: string;
    intervention_type: InterventionType;
    trigger_reason?: string | null;
    action_taken: string;
    created_at: string;
    ended_at?: string | null;
    duration_seconds?: number | null;
    client_msg_id?: string | null;
  }[];
  /**
   * Pass as `before` to get the next page; absent on the last page.
   */
  next_before?: string | null;
}
/**
 * A page of a listing, newest first.
 */
export interface Listing_Job {
  /**
   * Items: A job as stored and as every client sees it.
   */
  items: {
    id: JobId;
    tenant: TenantId;
    /**
     * `voice_clone`, `persona_extract`, `rag_ingest`... (1–50 bytes).
     */
    type: string;
    status: JobStatus;
    /**
     * 0–100; never goes down.
     */
    progress: number;
    /**
     * Who the job is for (seed 004 `user_id`): a connection whose subject
     * this is may watch it, beside the tenant's operators.
     */
    owner?: string | null;
    session?: SessionId | null;
    /**
     * The session whose stream carries the job's `job` events: `session`
     * when given, else a stream of the job's own. Join it to watch.
     */
    stream: SessionId;
    /**
     * The job's input, as given at creation.
     */
    metadata: {};
    /**
     * The output, once `completed`.
     */
    result?: {} | null;
    /**
     * What went wrong, once `failed` (e.g. `{"code": ..., "message": ...}`).
     */
    error?: {} | null;
    created_at: string;
    updated_at: string;
    /**
     * First moved to `processing`.
     */
    started_at?: string | null;
    completed_at?: string | null;
    /**
     * Failed or cancelled.
     */
    failed_at?: string | null;
  }[];
  /**
   * Pass as `before` to get the next page; absent on the last page.
   */
  next_before?: string | null;
}
/**
 * A page of a listing, newest first.
 */
export interface Listing_SessionView {
  /**
   * Items: A session as REST shows it: the stored record plus what only the live
   * replica knows.
   */
  items: (SessionRecord & {
    live?: LiveView | null;
  })[];
  /**
   * Pass as `before` to get the next page; absent on the last page.
   */
  next_before?: string | null;
}
/**
 * A session row (seed 000 `sessions` joined with `session_state`).
 */
export interface SessionRecord {
  id: SessionId;
  tenant: TenantId;
  avatar_id?: string | null;
  name?: string | null;
  description?: string | null;
  /**
   * The vendor's id for the conversation this session presents
   * (`docs/INGEST.md`): inbound events name it. Unique across tenants.
   */
  external_id?: string | null;
  status: SessionStatus;
  config: unknown;
  created_at: string;
  started_at?: string | null;
  ended_at?: string | null;
  counters: Counters;
  last_error?: string | null;
  state: SessionState;
  context: unknown;
}
/**
 * Real-time session state (seed 000 `session_state`). Every `state` event
 * carries the whole struct, so a client that skipped some (conflation)
 * still ends up with the right picture.
 */
export interface SessionState {
  current_slide: number;
  presentation_mode: string;
  is_speaking: boolean;
  awaiting_questions: boolean;
  /**
   * True while at least one operator watches the session. Owned by the
   * hub; renderers cannot set it.
   */
  operator_connected: boolean;
  current_topic?: string | null;
  /**
   * Time of the last question or response, in Unix milliseconds. Owned by
   * the hub.
   */
  last_interaction: number;
}
export interface LiveView {
  position: StreamPosition;
  renderer_connected: boolean;
  controller?: string | null;
  connections: number;
}
/**
 * `(epoch, seq)`: where a client is in a session's stream.
 */
export interface StreamPosition {
  epoch: Epoch;
  seq: number;
}
/**
 * `POST /v1/jobs`.
 */
export interface NewJob {
  /**
   * `voice_clone`, `persona_extract`, `rag_ingest`... (1–50 bytes).
   */
  type: string;
  /**
   * Who the job is for: the subject of the connections that may watch
   * it beside the tenant's operators.
   */
  owner?: string | null;
  session?: SessionId | null;
  audience?: CustomAudience | null;
  /**
   * The job's input (a JSON object).
   */
  metadata?: {} | null;
}
/**
 * What a backend gives to create a session.
 */
export interface NewSession {
  name?: string | null;
  description?: string | null;
  avatar_id?: string | null;
  config?: unknown;
  /**
   * The vendor's id for the conversation this session presents (a
   * Tavus conversation id, a HeyGen streaming session id, a LiveKit
   * room name): inbound events that name it drive this session
   * (`docs/INGEST.md`). 1-255 bytes, no control characters, unique.
   */
  external_id?: string | null;
}
export interface NewWebhook {
  /**
   * `https://…` (or `http://…`); up to 500 bytes. Loopback, private,
   * link-local and metadata addresses are refused unless the hub's
   * settings allow them.
   */
  url: string;
  /**
   * Event types (`docs/WEBHOOKS.md`), or `["*"]` for all.
   */
  events: string[];
  description?: string | null;
  /**
   * 0 to 20; 3 when absent.
   */
  retry_count?: number | null;
  /**
   * 1 to 300; 30 when absent.
   */
  timeout_seconds?: number | null;
}
export interface ReasonBody {
  reason?: string | null;
}
export interface ReplayAccepted {
  /**
   * Deliveries queued again (at most 10,000 per call), each with its
   * original `webhook-id` and body.
   */
  replayed: number;
}
/**
 * Exactly one of the two.
 */
export interface ReplayRequest {
  /**
   * Replay every event queued for the endpoint at or after this time.
   */
  since?: string | null;
  /**
   * Replay this delivery's event and every later one of the endpoint.
   */
  delivery_id?: number | null;
}
export interface StatusBody {
  /**
   * The status to move to.
   */
  status: SessionStatus;
  reason?: string | null;
}
export interface TokenRequest {
  role: Role;
  /**
   * Who connects: 1-255 bytes, no control characters.
   */
  subject: string;
  /**
   * Sessions the token may join; required for participants (at most
   * 100); absent means any session of the tenant.
   */
  sessions?: SessionId[] | null;
  /**
   * Display name for presence.
   */
  name?: string | null;
  /**
   * Lifetime in seconds; `auth.token_ttl_s` when absent, never more
   * than `auth.token_ttl_max_s`.
   */
  ttl_s?: number | null;
}
export interface WebhookChange {
  url?: string | null;
  events?: string[] | null;
  /**
   * `null` clears it.
   */
  description?: string | null;
  /**
   * `true` re-enables a disabled endpoint (and clears its failure
   * count); `false` pauses it.
   */
  is_active?: boolean | null;
  retry_count?: number | null;
  timeout_seconds?: number | null;
}
export interface WebhookList {
  items: WebhookView[];
}
