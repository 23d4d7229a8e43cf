// Pieces that need no hub: the reconnect rule against the schema's
// close-code table, backoff bounds, ids, codecs and URL handling.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffDefaults, backoffDelay } from '../src/backoff.js';
import { IdGenerator } from '../src/ids.js';
import { MsgpackDecoder } from '../src/msgpack.js';
import { encode, ExtData } from '@msgpack/msgpack';
import { CLOSE_CODES, createCodec, RETRYABLE_ERROR_CODES, shouldReconnect, HubError } from '../src/index.js';

describe('close-code rule', () => {
  it('agrees with every x-reconnect of the schema', () => {
    for (const [code, { name, reconnect }] of Object.entries(CLOSE_CODES)) {
      assert.equal(shouldReconnect(Number(code)), reconnect, `${code} ${name}`);
    }
  });
  it('reconnects after a drop without a close frame, and on codes a newer hub may add in 4000-4499', () => {
    assert.equal(shouldReconnect(1006), true);
    assert.equal(shouldReconnect(4100), true);
    assert.equal(shouldReconnect(4499), true);
    assert.equal(shouldReconnect(4500), false);
    assert.equal(shouldReconnect(1001), false);
  });
  it('marks the schema x-retryable error codes as retryable', () => {
    for (const code of RETRYABLE_ERROR_CODES) assert.equal(new HubError(code, '').retryable, true);
    assert.equal(new HubError('conflict', '').retryable, false);
  });
});

describe('backoff', () => {
  it('stays within [0, min(max, min * 2^n)] (full jitter)', () => {
    const opts = backoffDefaults({ minDelayMs: 100, maxDelayMs: 1000 });
    assert.equal(backoffDelay(0, opts, () => 0.999), 99);
    assert.equal(backoffDelay(3, opts, () => 0.999), 799);
    assert.equal(backoffDelay(10, opts, () => 0.999), 999);
    assert.equal(backoffDelay(10, opts, () => 0), 0);
  });
});

describe('ids', () => {
  it('are unique across generators and within the 64-byte limit', () => {
    const a = new IdGenerator();
    const b = new IdGenerator();
    const ids = new Set([a.next(), a.next(), b.next(), b.next()]);
    assert.equal(ids.size, 4);
    for (const id of ids) assert.ok(id.length <= 64);
  });
});

describe('codecs', () => {
  it('msgpack omits absent fields and round-trips frames', () => {
    const c = createCodec('msgpack');
    const bytes = c.encode({ type: 'publish', session: 's', name: 'n', data: { a: 1 }, audience: undefined, id: 'p1' });
    assert.ok(bytes instanceof Uint8Array);
    const back = c.decode(bytes) as unknown as Record<string, unknown>;
    assert.deepEqual(back, { type: 'publish', session: 's', name: 'n', data: { a: 1 }, id: 'p1' });
  });
  it('refuses the other codec\'s message type', () => {
    assert.throws(() => createCodec('json').decode(new Uint8Array([0x80])));
    assert.throws(() => createCodec('msgpack').decode('{}'));
  });
});

describe('msgpack decoder', () => {
  const values: unknown[] = [
    0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1,
    -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 53 - 1),
    0.5, -1.25, 1e300, Number.MIN_VALUE,
    null, true, false, '', 'a', 'x'.repeat(31), 'x'.repeat(32), 'y'.repeat(300), 'z'.repeat(70000),
    'héllo wörld ✓ 😀', '0192f5c0-7d3e-7b1a-9c4e-2f6a8d1b3c5e',
    [], [1, [2, [3]]], Array.from({ length: 20 }, (_, i) => i), Array.from({ length: 70000 }, () => 1),
    {}, { a: 1, b: { c: [true, null] } }, Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i])),
  ];
  it('decodes what @msgpack/msgpack encodes', () => {
    const d = new MsgpackDecoder();
    for (const v of values) {
      assert.deepEqual(d.decode(encode(v)), v);
      // twice: the second time short strings come from the cache
      assert.deepEqual(d.decode(encode(v)), v);
    }
  });
  it('decodes binary, ArrayBuffers and views at an offset', () => {
    const d = new MsgpackDecoder();
    assert.deepEqual(d.decode(encode(new Uint8Array([1, 2, 3]))), new Uint8Array([1, 2, 3]));
    const bytes = encode({ type: 'event', seq: 7 });
    assert.deepEqual(d.decode(bytes.slice().buffer), { type: 'event', seq: 7 });
    const padded = new Uint8Array(bytes.length + 5);
    padded.set(bytes, 5);
    assert.deepEqual(d.decode(new DataView(padded.buffer, 5, bytes.length)), { type: 'event', seq: 7 });
  });
  it('keeps a __proto__ key as data', () => {
    const d = new MsgpackDecoder();
    // fixmap(1) fixstr(9) "__proto__" fixmap(1) "x" 1
    const bytes = new Uint8Array([0x81, 0xa9, ...new TextEncoder().encode('__proto__'), 0x81, 0xa1, 0x78, 0x01]);
    const o = d.decode(bytes) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(o), Object.prototype);
    assert.deepEqual(Object.getOwnPropertyDescriptor(o, '__proto__')?.value, { x: 1 });
  });
  it('falls back for extension types and refuses truncated input', () => {
    const d = new MsgpackDecoder();
    const ext = encode({ t: new ExtData(5, new Uint8Array([9])) });
    assert.deepEqual(d.decode(ext), { t: new ExtData(5, new Uint8Array([9])) });
    assert.throws(() => d.decode(encode('hello').subarray(0, 3)));
    assert.throws(() => d.decode(new Uint8Array([0x81, 0xa1, 0x61])));
  });
});
