// Exponential backoff with full jitter: attempt n waits a uniformly random
// time in [0, min(max, min * 2^n)] (the AWS "full jitter" scheme), so a
// hub restart does not bring every client back in the same instant.

export interface BackoffOptions {
  /** Upper bound of the first wait, ms. Default 250. */
  minDelayMs?: number;
  /** Cap of every wait, ms. Default 10000. */
  maxDelayMs?: number;
}

export function backoffDelay(attempt: number, opts: Required<BackoffOptions>, random: () => number = Math.random): number {
  const ceiling = Math.min(opts.maxDelayMs, opts.minDelayMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

export function backoffDefaults(opts: BackoffOptions | undefined): Required<BackoffOptions> {
  const minDelayMs = opts?.minDelayMs ?? 250;
  return { minDelayMs, maxDelayMs: Math.max(minDelayMs, opts?.maxDelayMs ?? 10_000) };
}
