// Narrow views of the generated wire types (src/protocol.gen.ts), named
// so hand-written code and apps can say "an event of kind X" or "the ack
// frame" without repeating `Extract<...>` everywhere.
import type { ClientFrame, CompactEventFrame, Event, ServerFrame } from './protocol.gen.js';

export type * from './protocol.gen.js';

/** Every `kind` an event can have. */
export type EventKind = Event['kind'];
/** The event of one kind, e.g. `EventOf<'question'>`. */
export type EventOf<K extends EventKind> = Extract<Event, { kind: K }>;

/** Every `type` the hub sends. */
export type ServerFrameType = ServerFrame['type'];
/** The server frame of one type, e.g. `ServerFrameOf<'ack'>`. */
export type ServerFrameOf<T extends ServerFrameType> = Extract<ServerFrame, { type: T }>;

/** Every `type` a client sends. */
export type ClientFrameType = ClientFrame['type'];
/** The client frame of one type, e.g. `ClientFrameOf<'question'>`. */
export type ClientFrameOf<T extends ClientFrameType> = Extract<ClientFrame, { type: T }>;

export type WelcomeFrame = ServerFrameOf<'welcome'>;
export type JoinedFrame = ServerFrameOf<'joined'>;
export type SnapshotFrame = ServerFrameOf<'snapshot'>;
export type ResumedFrame = ServerFrameOf<'resumed'>;
export type DiscontinuityFrame = ServerFrameOf<'discontinuity'>;
/** An `event` frame as the hub sends it (always with `ts`). */
export type WireEventFrame = ServerFrameOf<'event'>;
/**
 * An event frame as handlers and the store get it. `ts` (when the hub
 * accepted the event) is absent for sessions joined with `compact`: their
 * events come as compact event frames, which carry no `ts`, and the SDK
 * builds this frame from one (`session` from the alias, `seq` from `q`).
 */
export type EventFrame = Omit<WireEventFrame, 'ts'> & { ts?: number };
/** Anything the hub sends: a server frame, or a compact event frame (no `type`). */
export type IncomingFrame = ServerFrame | CompactEventFrame;
export type UrgentFrame = ServerFrameOf<'urgent'>;
export type LeftFrame = ServerFrameOf<'left'>;
export type AckFrame = ServerFrameOf<'ack'>;
export type ErrorFrame = ServerFrameOf<'error'>;
export type PongFrame = ServerFrameOf<'pong'>;
export type SessionListFrame = ServerFrameOf<'session_list'>;

/** An event frame whose event is of one kind. */
export type EventFrameOf<K extends EventKind> = EventFrame & { event: EventOf<K> };

/** Client frames that carry a session (everything but `auth`, `ping` and `list_sessions`). */
export type SessionFrame = Exclude<ClientFrame, { type: 'auth' } | { type: 'ping' } | { type: 'list_sessions' }>;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
type HavingId<T> = T extends unknown ? ('id' extends keyof T ? T : never) : never;

/** Session frames that can carry an `id`, and so are answered with `ack` or `error`. */
export type AckableFrame = HavingId<SessionFrame>;
/** An ackable frame before the SDK gives it an id. */
export type AckableFrameInput = DistributiveOmit<AckableFrame, 'id'>;
