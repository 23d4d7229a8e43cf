// @eva-hub/client: the eva-hub WebSocket client (renderers, operators,
// participants) and the REST wrapper for backends.
export { EvaClient, type ClientEvents, type ClientOptions } from './client.js';
export { Session, type EmergencyStop, type JoinOptions, type ResponseInput, type SessionEvents } from './session.js';
export type { ConversationLine, EmergencyStopView, SessionView, StoreListener } from './store.js';
export type { ConnectionState, ConnectionStatus, TokenSource, WebSocketConstructor, WebSocketLike } from './connection.js';
export type { SendOptions } from './pending.js';
export type { BackoffOptions } from './backoff.js';
export { createCodec, SUBPROTOCOLS, type Codec, type CodecName } from './codec.js';
export { closeCodeName, shouldReconnect } from './closecodes.js';
export { AckTimeoutError, ConnectionClosedError, EvaError, HandshakeError, HubError, SessionLeftError } from './errors.js';
export { HubRest } from './rest.js';
export type {
  AlertRow,
  ConversationRow,
  CreatedKey,
  EventAccepted,
  EventBody,
  InterventionRow,
  IssuedToken,
  JobChange,
  KeyList,
  KeyRequest,
  KeyView,
  Listing_Job,
  LiveView,
  NewJob,
  NewSession,
  Page,
  PageQuery,
  RestOptions,
  SessionInfo,
  TokenRequest,
} from './rest.js';
/** Every REST body as generated from docs/openapi.json (`Rest.SessionView`, `Rest.Listing_ConversationRow`, ...). */
export type * as Rest from './rest.gen.js';
export { CLOSE_CODES, RETRYABLE_ERROR_CODES } from './protocol.gen.js';
export type * from './protocol.js';
