/* Generated from docs/protocol.schema.json by scripts/gen-types.mjs (npm run gen:types). Do not edit. */

/**
 * Every frame of the eva-hub WebSocket protocol, carried as JSON in text frames (eva.v1.json) or as MessagePack maps with the same keys in binary frames (eva.v1.msgpack). A client sends ClientFrame and receives ServerFrame, or CompactEventFrame for the sessions it joined with `compact: true`; docs/PROTOCOL.md explains what each one does.
 */
export type EvaV1 = ClientFrame | ServerFrame | CompactEventFrame;
/**
 * Frames a client sends.
 */
export type ClientFrame =
  | {
      type: "auth";
      token: Secret;
    }
  | {
      type: "join";
      session: SessionId;
      resume?: StreamPosition | null;
      takeover?: boolean;
      /**
       * Display name for presence (participants).
       */
      name?: string | null;
      /**
       * Receive this session's events as compact event frames (see
       * `CompactEventFrame`): the session named by the alias `joined`
       * gives, no `type`, `session` or `ts`.
       */
      compact?: boolean;
      /**
       * `false`: do not send this connection the events it published
       * itself (its frames are still answered with `ack`).
       */
      echo?: boolean;
      id?: string | null;
    }
  | {
      type: "leave";
      session: SessionId;
      id?: string | null;
    }
  | {
      type: "state";
      session: SessionId;
      state: StatePatch;
      id?: string | null;
    }
  | {
      type: "context";
      session: SessionId;
      context: unknown;
      id?: string | null;
    }
  | {
      type: "metrics";
      session: SessionId;
      metrics: RendererMetrics;
    }
  | {
      type: "status";
      session: SessionId;
      status: SessionStatus;
      reason?: string | null;
      id?: string | null;
    }
  | {
      type: "response";
      session: SessionId;
      id: string;
      question_id?: EventId | null;
      text: string;
      confidence: number;
      response_time_ms: number;
      intent?: string | null;
      knowledge_sources?: string[];
      command_id?: EventId | null;
    }
  | {
      type: "command_ack";
      session: SessionId;
      command_id: EventId;
    }
  | {
      type: "question";
      session: SessionId;
      id: string;
      text: string;
    }
  | {
      type: "takeover";
      session: SessionId;
      reason?: string | null;
      id?: string | null;
    }
  | {
      type: "release";
      session: SessionId;
      id?: string | null;
    }
  | {
      type: "command";
      session: SessionId;
      id: string;
      command: Command;
    }
  | {
      type: "suggestion";
      session: SessionId;
      id: string;
      text: string;
    }
  | {
      type: "correction";
      session: SessionId;
      id: string;
      response_id: EventId;
      text: string;
    }
  | {
      type: "emergency_stop";
      session: SessionId;
      id: string;
      reason?: string | null;
    }
  | {
      type: "approve";
      session: SessionId;
      response_id: EventId;
      id?: string | null;
    }
  | {
      type: "ack_alert";
      session: SessionId;
      alert_id: EventId;
      id?: string | null;
    }
  | {
      type: "publish";
      session: SessionId;
      name: string;
      audience?: CustomAudience & string;
      data?: unknown;
      id?: string | null;
    }
  | {
      type: "list_sessions";
      /**
       * Only sessions in this status.
       */
      status?: SessionStatus | null;
      include_ended?: boolean;
      /**
       * 1 to 500; 100 when absent.
       */
      limit?: number | null;
      id?: string | null;
    }
  | {
      type: "ping";
      nonce?: number | null;
    };
/**
 * A credential; the hub never logs or echoes it.
 */
export type Secret = string;
export type SessionId = string;
/**
 * One incarnation of a session's stream: 16 lowercase hex digits.
 */
export type Epoch = string;
/**
 * Session lifecycle (seed 000 `sessions.status`).
 *
 * ```text
 * created → starting → active ⇄ paused → stopping → stopped
 *              └──────────┴────────┴─────────┴──→ failed
 * ```
 */
export type SessionStatus = "created" | "starting" | "active" | "paused" | "stopping" | "stopped" | "failed";
export type EventId = string;
/**
 * What an operator tells the renderer to do.
 */
export type Command =
  | {
      action: "say";
      text: string;
    }
  | {
      action: "goto_slide";
      slide: number;
    }
  | {
      action: "pause";
    }
  | {
      action: "resume";
    };
/**
 * Audience a renderer, operator or backend picks for an app-defined event.
 */
export type CustomAudience = ("operators" | "renderer") | "all" | "staff";
/**
 * Frames the hub sends.
 */
export type ServerFrame =
  | {
      type: "welcome";
      protocol: string;
      conn_id: ConnId;
      role: Role;
      subject: string;
      tenant: TenantId;
      server_time: number;
      heartbeat_ms: number;
      max_message_bytes: number;
    }
  | {
      type: "joined";
      session: SessionId;
      role: Role;
      /**
       * The renderer's fence (renderers only).
       */
      fence?: number | null;
      /**
       * With `compact`: the number this connection's compact event
       * frames name the session by (`e`).
       */
      alias?: number | null;
      id?: string | null;
    }
  | (Snapshot & {
      type: "snapshot";
    })
  | {
      type: "resumed";
      session: SessionId;
      epoch: Epoch;
      from: number;
      to: number;
    }
  | {
      type: "discontinuity";
      session: SessionId;
      reason: DiscontinuityReason;
      epoch: Epoch;
      seq: number;
    }
  | {
      type: "event";
      session: SessionId;
      seq: number;
      /**
       * When the hub accepted the event, Unix milliseconds.
       */
      ts: number;
      event: Event;
    }
  | {
      type: "urgent";
      session: SessionId;
      seq: number;
      intervention_id: EventId;
      reason?: string | null;
    }
  | {
      type: "left";
      session: SessionId;
      id?: string | null;
    }
  | {
      type: "ack";
      id: string;
      session?: SessionId | null;
      /**
       * Sequence number of the event the frame produced.
       */
      seq?: number | null;
      /**
       * The hub's id for what was created (question_id, response_id,
       * intervention_id...).
       */
      ref_id?: EventId | null;
      /**
       * True when this id was seen before and nothing new was created.
       */
      duplicate?: boolean;
    }
  | {
      type: "error";
      code: ErrorCode;
      message: string;
      id?: string | null;
      session?: SessionId | null;
      /**
       * For retryable errors: wait at least this long before retrying.
       */
      retry_after_ms?: number | null;
    }
  | {
      type: "pong";
      nonce?: number | null;
      server_time: number;
    }
  | {
      type: "session_list";
      id?: string | null;
      sessions: SessionSummary[];
    };
/**
 * A connection, unique within one hub process.
 */
export type ConnId = number;
/**
 * What a connection is. Fixed for the life of the connection.
 */
export type Role = "renderer" | "operator" | "participant";
export type TenantId = string;
/**
 * Closed set of alert types the hub raises.
 */
export type AlertType =
  "renderer_heartbeat_lost" | "emergency_stop_unacknowledged" | "metric_threshold" | "webhook_disabled";
export type Severity = "info" | "warning" | "error" | "critical";
export type JobId = string;
/**
 * Where a job is in its life. `completed`, `failed` and `cancelled` are
 * terminal: nothing changes a job after them.
 */
export type JobStatus = "pending" | "processing" | "completed" | "failed" | "cancelled";
/**
 * Why a resume could not be served from history.
 */
export type DiscontinuityReason = "epoch_changed" | "history_trimmed" | "position_ahead";
/**
 * Every event a session emits. Each gets the next `seq` of its session and
 * reaches the roles its [`Event::audience`] names.
 */
export type Event =
  | {
      kind: "created";
      name: string | null;
    }
  | {
      kind: "lifecycle";
      status: SessionStatus;
      previous: SessionStatus;
      reason?: string | null;
      by?: string | null;
    }
  | {
      kind: "state";
      state: SessionState;
    }
  | {
      kind: "context";
      context: unknown;
    }
  | {
      kind: "presence";
      change: PresenceChange;
      member: Member;
      participant_count: number;
    }
  | {
      kind: "counters";
      counters: Counters;
    }
  | {
      kind: "renderer";
      connected: boolean;
      fence: number;
      renderer_id?: string | null;
    }
  | {
      kind: "question";
      question_id: EventId;
      participant_id: string;
      participant_name?: string | null;
      text: string;
    }
  | (ResponseBody & {
      kind: "response";
    })
  | (ResponseBody & {
      kind: "response_held";
    })
  | {
      kind: "takeover";
      intervention_id: EventId;
      operator_id: string;
      reason?: string | null;
    }
  | {
      kind: "release";
      intervention_id: EventId;
      operator_id: string;
      reason: ReleaseReason;
    }
  | {
      kind: "command";
      command_id: EventId;
      operator_id: string;
      command: Command;
    }
  | {
      kind: "command_ack";
      command_id: EventId;
      latency_ms: number;
    }
  | {
      kind: "suggestion";
      intervention_id: EventId;
      operator_id: string;
      text: string;
    }
  | {
      kind: "correction";
      intervention_id: EventId;
      operator_id: string;
      response_id: EventId;
      text: string;
    }
  | {
      kind: "emergency_stop";
      intervention_id: EventId;
      operator_id: string;
      reason?: string | null;
    }
  | {
      kind: "metrics";
      metrics: RendererMetrics;
    }
  | {
      kind: "alert";
      alert: Alert;
    }
  | {
      kind: "alert_ack";
      alert_id: EventId;
      by: string;
    }
  | {
      kind: "custom";
      name: string;
      /**
       * Left out when `all` (what receivers assume without it).
       */
      audience?: CustomAudience;
      data: unknown;
      /**
       * Who published it: the subject of the renderer's or operator's
       * token for a `publish` frame, or the API key's name for
       * `POST /v1/sessions/{id}/events`.
       */
      from: string;
    }
  | {
      kind: "job";
      job: Job;
      /**
       * `all` in a job's own stream (only its owner and operators may
       * join that); `operators` in a presentation session.
       */
      audience?: CustomAudience;
    };
export type PresenceChange = "join" | "leave";
/**
 * Why a takeover ended.
 */
export type ReleaseReason = "released" | "expired" | "session_ended";
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
 * An event as a connection that joined with `compact: true` receives it:
 * `e` (the session's alias from `joined`) and `q` (its `seq`), then the
 * event's own fields (`kind` first among them in meaning, not in order).
 * It has no `type`: a frame with `e` is a compact event frame. It leaves
 * out the session id, the frame type and the hub's `ts`, which most
 * receivers never read, so a 128-byte event costs about a third fewer bytes.
 */
export type CompactEventFrame = {
  e: number;
  q: number;
} & CompactEventFrame1;
export type CompactEventFrame1 =
  | {
      kind: "created";
      name: string | null;
    }
  | {
      kind: "lifecycle";
      status: SessionStatus;
      previous: SessionStatus;
      reason?: string | null;
      by?: string | null;
    }
  | {
      kind: "state";
      state: SessionState;
    }
  | {
      kind: "context";
      context: unknown;
    }
  | {
      kind: "presence";
      change: PresenceChange;
      member: Member;
      participant_count: number;
    }
  | {
      kind: "counters";
      counters: Counters;
    }
  | {
      kind: "renderer";
      connected: boolean;
      fence: number;
      renderer_id?: string | null;
    }
  | {
      kind: "question";
      question_id: EventId;
      participant_id: string;
      participant_name?: string | null;
      text: string;
    }
  | (ResponseBody & {
      kind: "response";
    })
  | (ResponseBody & {
      kind: "response_held";
    })
  | {
      kind: "takeover";
      intervention_id: EventId;
      operator_id: string;
      reason?: string | null;
    }
  | {
      kind: "release";
      intervention_id: EventId;
      operator_id: string;
      reason: ReleaseReason;
    }
  | {
      kind: "command";
      command_id: EventId;
      operator_id: string;
      command: Command;
    }
  | {
      kind: "command_ack";
      command_id: EventId;
      latency_ms: number;
    }
  | {
      kind: "suggestion";
      intervention_id: EventId;
      operator_id: string;
      text: string;
    }
  | {
      kind: "correction";
      intervention_id: EventId;
      operator_id: string;
      response_id: EventId;
      text: string;
    }
  | {
      kind: "emergency_stop";
      intervention_id: EventId;
      operator_id: string;
      reason?: string | null;
    }
  | {
      kind: "metrics";
      metrics: RendererMetrics;
    }
  | {
      kind: "alert";
      alert: Alert;
    }
  | {
      kind: "alert_ack";
      alert_id: EventId;
      by: string;
    }
  | {
      kind: "custom";
      name: string;
      /**
       * Left out when `all` (what receivers assume without it).
       */
      audience?: CustomAudience;
      data: unknown;
      /**
       * Who published it: the subject of the renderer's or operator's
       * token for a `publish` frame, or the API key's name for
       * `POST /v1/sessions/{id}/events`.
       */
      from: string;
    }
  | {
      kind: "job";
      job: Job;
      /**
       * `all` in a job's own stream (only its owner and operators may
       * join that); `operators` in a presentation session.
       */
      audience?: CustomAudience;
    };

/**
 * `(epoch, seq)`: where a client is in a session's stream.
 */
export interface StreamPosition {
  epoch: Epoch;
  seq: number;
}
/**
 * What a renderer may change in [`SessionState`]. Absent fields are kept.
 * `current_topic: null` clears the topic.
 */
export interface StatePatch {
  current_slide?: number | null;
  presentation_mode?: string | null;
  is_speaking?: boolean | null;
  awaiting_questions?: boolean | null;
  current_topic?: string | null;
}
/**
 * One renderer metrics report (seed 000 `eva:session:{id}:metrics`).
 * Usages are fractions in `[0, 1]`.
 */
export interface RendererMetrics {
  latency_ms?: number | null;
  cpu_usage?: number | null;
  gpu_usage?: number | null;
  memory_usage?: number | null;
  fps?: number | null;
  stages?: StageLatencies;
  /**
   * Which part of the renderer measured this (seed 000
   * `performance_metrics.component`), e.g. `speech_recognition`.
   */
  component?: string | null;
}
/**
 * Per-stage pipeline latencies (seed 002 `stt_latency_ms` ...).
 */
export interface StageLatencies {
  stt_ms?: number | null;
  llm_ms?: number | null;
  tts_ms?: number | null;
  total_ms?: number | null;
}
/**
 * Everything a client needs to render a session at `seq`. Live events with
 * a higher `seq` follow it.
 */
export interface Snapshot {
  session: SessionId;
  epoch: Epoch;
  seq: number;
  status: SessionStatus;
  name?: string | null;
  state: SessionState;
  counters: Counters;
  presence: PresenceView;
  control?: ControlView | null;
  context?: unknown;
  metrics?: RendererMetrics | null;
  /**
   * Open (unacknowledged) alerts. Operators only.
   */
  alerts?: Alert[] | null;
  /**
   * Responses held back during a takeover. Operators only.
   */
  held_responses?: ResponseBody[] | null;
  /**
   * Questions no response (published or held) answers yet, oldest
   * first; at most the latest 256. Renderer and operators.
   */
  questions?: OpenQuestion[] | null;
  /**
   * Commands and emergency stops the renderer has not acknowledged,
   * oldest first. Renderer and operators.
   */
  pending_commands?: PendingCommandView[] | null;
  /**
   * Jobs reporting into this stream that the role may see, in the
   * order they last changed (`docs/JOBS.md`). Absent when none.
   */
  jobs?: Job[] | null;
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
  current_topic: string | null;
  /**
   * Time of the last question or response, in Unix milliseconds. Owned by
   * the hub.
   */
  last_interaction: number;
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
 * Presence as a snapshot shows it.
 */
export interface PresenceView {
  participant_count: number;
  /**
   * Members (staff views only), at most the configured cap.
   */
  members?: Member[] | null;
  /**
   * True when `members` was cut at the cap.
   */
  truncated?: boolean;
}
/**
 * A participant, operator or renderer as presence lists it.
 */
export interface Member {
  id: string;
  role: Role;
  name?: string | null;
}
/**
 * Who holds the session (staff views only).
 */
export interface ControlView {
  /**
   * The operator that has taken the session over, if any.
   */
  controller: string | null;
  renderer_connected: boolean;
  /**
   * The current renderer fence; grows by one on every renderer join.
   */
  renderer_fence: number;
}
/**
 * An alert (seed 000 `system_alerts`).
 */
export interface Alert {
  alert_id: EventId;
  alert_type: AlertType;
  severity: Severity;
  title: string;
  message: string;
  component?: string | null;
  metadata: unknown;
  created_at: number;
}
/**
 * A renderer's answer (seed 000 `question_responses`).
 */
export interface ResponseBody {
  response_id: EventId;
  question_id?: EventId | null;
  text: string;
  confidence: number;
  response_time_ms: number;
  intent?: string | null;
  knowledge_sources: string[];
  /**
   * Set when the response carries out an operator `say` command.
   */
  command_id?: EventId | null;
}
/**
 * A question still waiting for an answer, as a snapshot lists it.
 */
export interface OpenQuestion {
  question_id: EventId;
  participant_id: string;
  participant_name?: string | null;
  text: string;
  /**
   * When it was asked, Unix milliseconds.
   */
  asked_at: number;
}
/**
 * A command or emergency stop awaiting the renderer's `command_ack`.
 */
export interface PendingCommandView {
  /**
   * The `command_id`, or the emergency stop's `intervention_id`.
   */
  command_id: EventId;
  operator_id: string;
  /**
   * True for an emergency stop: stop now, then acknowledge.
   */
  emergency: boolean;
  /**
   * What to do (commands only).
   */
  command?: Command | null;
  /**
   * Why (emergency stops).
   */
  reason?: string | null;
  /**
   * When it was issued, Unix milliseconds.
   */
  issued_at: number;
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
  /**
   * The presentation session the job was created for, if any.
   */
  session?: SessionId | null;
  /**
   * The session whose stream carries the job's `job` events: `session`
   * when given, else a stream of the job's own. Join it to watch.
   */
  stream: SessionId;
  /**
   * The job's input, as given at creation.
   */
  metadata: {
    [k: string]: unknown | undefined;
  };
  /**
   * The output, once `completed`.
   */
  result?: unknown;
  /**
   * What went wrong, once `failed` (e.g. `{"code": ..., "message": ...}`).
   */
  error?: unknown;
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
 * One line of a `session_list`: enough for a console's overview. The
 * live fields are what this node's replica knows; join the session for
 * its events.
 */
export interface SessionSummary {
  session: SessionId;
  name?: string | null;
  status: SessionStatus;
  /**
   * Unix milliseconds.
   */
  created_at: number;
  participant_count: number;
  questions_received: number;
  renderer_connected: boolean;
  /**
   * The operator that has taken the session over.
   */
  controller?: string | null;
  is_speaking: boolean;
  current_slide: number;
  /**
   * Alerts not acknowledged yet.
   */
  open_alerts: number;
}

/** WebSocket close codes the hub sends (schema `CloseCode`). */
export type CloseCode = 1000 | 1002 | 1003 | 1007 | 1009 | 1011 | 1012 | 4000 | 4001 | 4002 | 4003 | 4004 | 4500 | 4501 | 4502 | 4503 | 4504 | 4505;

/** Each close code's name and whether a client reconnects after it (`x-reconnect`). */
export const CLOSE_CODES: Readonly<Record<CloseCode, { readonly name: string; readonly reconnect: boolean }>> = {
  1000: { name: "normal", reconnect: false },
  1002: { name: "protocol_error", reconnect: false },
  1003: { name: "unsupported_data", reconnect: false },
  1007: { name: "invalid_payload", reconnect: false },
  1009: { name: "message_too_big", reconnect: false },
  1011: { name: "internal_error", reconnect: true },
  1012: { name: "service_restart", reconnect: true },
  4000: { name: "slow_consumer", reconnect: true },
  4001: { name: "idle_timeout", reconnect: true },
  4002: { name: "token_expired", reconnect: true },
  4003: { name: "rate_limited", reconnect: true },
  4004: { name: "overloaded", reconnect: true },
  4500: { name: "protocol_violation", reconnect: false },
  4501: { name: "unauthorized", reconnect: false },
  4502: { name: "forbidden", reconnect: false },
  4503: { name: "auth_timeout", reconnect: false },
  4504: { name: "replaced", reconnect: false },
  4505: { name: "session_ended", reconnect: false },
};

/** Error codes worth retrying after `retry_after_ms` (`x-retryable`). */
export const RETRYABLE_ERROR_CODES: readonly ErrorCode[] = ["rate_limited","backlog_full","unavailable","internal"];
