// The two wire encodings of eva.v1. Both carry the same frames; JSON goes
// in text messages, MessagePack (maps keyed by field name) in binary ones.
import { Encoder } from '@msgpack/msgpack';
import { MsgpackDecoder } from './msgpack.js';
import type { ClientFrame, IncomingFrame } from './protocol.js';

export type CodecName = 'json' | 'msgpack';

/** What a WebSocket hands to `onmessage`: text, or bytes in some container. */
export type WireData = string | ArrayBuffer | ArrayBufferView;

export interface Codec {
  readonly name: CodecName;
  /** The `Sec-WebSocket-Protocol` value that selects this codec. */
  readonly subprotocol: string;
  encode(frame: ClientFrame): string | Uint8Array;
  decode(data: WireData): IncomingFrame;
}

export const SUBPROTOCOLS: Readonly<Record<CodecName, string>> = {
  json: 'eva.v1.json',
  msgpack: 'eva.v1.msgpack',
};

const jsonCodec: Codec = {
  name: 'json',
  subprotocol: SUBPROTOCOLS.json,
  encode: (frame) => JSON.stringify(frame),
  decode(data) {
    if (typeof data !== 'string') throw new TypeError('eva.v1.json carries text messages; got binary');
    return JSON.parse(data) as IncomingFrame;
  },
};

function msgpackCodec(): Codec {
  // One encoder and decoder per client: the encoder reuses its buffer, the
  // decoder caches the short strings every frame repeats.
  // `ignoreUndefined` omits absent optional fields, as the protocol says.
  const encoder = new Encoder({ ignoreUndefined: true });
  const decoder = new MsgpackDecoder();
  return {
    name: 'msgpack',
    subprotocol: SUBPROTOCOLS.msgpack,
    encode: (frame) => encoder.encode(frame),
    decode(data) {
      if (typeof data === 'string') throw new TypeError('eva.v1.msgpack carries binary messages; got text');
      return decoder.decode(data) as IncomingFrame;
    },
  };
}

export function createCodec(name: CodecName): Codec {
  switch (name) {
    case 'json':
      return jsonCodec;
    case 'msgpack':
      return msgpackCodec();
  }
}
