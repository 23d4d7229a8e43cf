// The reconnect rule of docs/PROTOCOL.md ("Close codes"): 1011, 1012 and
// 4000-4499 mean reconnect with backoff and resume; every other code is
// final. The generated table names the codes the hub uses today; the rule
// covers codes a newer hub may add inside those ranges.
import { CLOSE_CODES, type CloseCode } from './protocol.gen.js';

/** A socket that ended without a close frame (network drop, killed process). */
export const ABNORMAL_CLOSURE = 1006;

/** True when a client should reconnect (and resume) after this close code. */
export function shouldReconnect(code: number): boolean {
  return code === 1011 || code === 1012 || (code >= 4000 && code <= 4499) || code === ABNORMAL_CLOSURE;
}

/** The hub's name for a close code (`token_expired`...), or `close_<code>`. */
export function closeCodeName(code: number): string {
  if (code === ABNORMAL_CLOSURE) return 'abnormal_closure';
  return (CLOSE_CODES as Record<number, { name: string } | undefined>)[code]?.name ?? `close_${code}`;
}

export type { CloseCode };
