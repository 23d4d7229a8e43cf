// Client frame ids. The hub keeps `(session, sender, id)` unique in its
// store forever, so an id must never be reused by the same subject, not
// even after a page reload or a process restart: each client draws a
// random 96-bit prefix and counts from there.

function randomPrefix(): string {
  const bytes = new Uint8Array(12);
  globalThis.crypto.getRandomValues(bytes);
  let s = '';
  for (const b of bytes) s += b.toString(36).padStart(2, '0');
  return s;
}

export class IdGenerator {
  private readonly prefix = randomPrefix();
  private n = 0;

  next(): string {
    this.n += 1;
    return `${this.prefix}-${this.n.toString(36)}`;
  }
}
