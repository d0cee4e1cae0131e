import * as zlib from 'node:zlib';
import type { LogMessage } from './log.js';

/**
 * The on-disk form of one record of the durable embedded log (lib/log-segments.ts), little-endian:
 *
 *   u32 body length · u32 CRC-32 of the body · body
 *   body: u8 topic length (1..255) · topic · u16 partition · f64 offset · f64 append time · u32 key length · key · value
 *
 * A body whose topic length is 0 is a segment header: the JSON of every partition's next offset
 * when the segment was started, so that offsets go on from there even once every record of a
 * partition has been dropped. The CRC finds a record torn by a crash (power loss mid-write).
 */
export const FRAME_HEADER = 8;
/** Larger bodies are taken for garbage (ingest bounds a record far below this). */
export const MAX_BODY = 64 * 1024 * 1024;

export interface FrameRecord {
  kind: 'record';
  topic: string;
  partition: number;
  offset: number;
  timestamp: number;
  key: string;
  value: string;
}

export interface FrameHeader {
  kind: 'header';
  /** [topic, partition, next offset] of every partition the log knew. */
  ends: [string, number, number][];
}

/** A frame at `pos`, its size, or why none can be read there. */
export type Decoded = { frame: FrameRecord | FrameHeader; size: number } | { torn: 'short' | 'length' | 'crc' | 'body' };

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

function crc32Js(buf: Uint8Array): number {
  let c = -1;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

// zlib.crc32 came with Node 20.15 and 22.2; the engines allow 20.10, which has only the JS one.
const nativeCrc32 = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;
export const crc32: (buf: Uint8Array) => number = nativeCrc32 ? (b) => nativeCrc32(b) : crc32Js;

/** The frames of messages appended to one partition, consecutive offsets from `firstOffset`; and each frame's size. */
export function encodeRecords(
  topic: string,
  partition: number,
  firstOffset: number,
  timestamp: number,
  messages: readonly LogMessage[],
): { buf: Buffer; sizes: number[] } {
  const topicBytes = Buffer.from(topic, 'utf8');
  if (topicBytes.length === 0 || topicBytes.length > 255) throw new Error(`topic "${topic}" must be 1 to 255 bytes`);
  const sizes = messages.map((m) => FRAME_HEADER + 1 + topicBytes.length + 2 + 8 + 8 + 4 + Buffer.byteLength(m.key) + Buffer.byteLength(m.value));
  const buf = Buffer.allocUnsafe(sizes.reduce((a, b) => a + b, 0));
  let pos = 0;
  messages.forEach((m, i) => {
    const start = pos;
    const body = start + FRAME_HEADER;
    pos = body;
    buf.writeUInt8(topicBytes.length, pos);
    pos += 1;
    pos += topicBytes.copy(buf, pos);
    buf.writeUInt16LE(partition, pos);
    pos += 2;
    buf.writeDoubleLE(firstOffset + i, pos);
    pos += 8;
    buf.writeDoubleLE(timestamp, pos);
    pos += 8;
    const keyLen = buf.write(m.key, pos + 4, 'utf8');
    buf.writeUInt32LE(keyLen, pos);
    pos += 4 + keyLen;
    pos += buf.write(m.value, pos, 'utf8');
    buf.writeUInt32LE(pos - body, start);
    buf.writeUInt32LE(crc32(buf.subarray(body, pos)), start + 4);
  });
  return { buf, sizes };
}

export function encodeHeader(ends: FrameHeader['ends']): Buffer {
  const json = Buffer.from(JSON.stringify({ ends }), 'utf8');
  const buf = Buffer.allocUnsafe(FRAME_HEADER + 1 + json.length);
  buf.writeUInt32LE(1 + json.length, 0);
  buf.writeUInt8(0, FRAME_HEADER);
  json.copy(buf, FRAME_HEADER + 1);
  buf.writeUInt32LE(crc32(buf.subarray(FRAME_HEADER)), 4);
  return buf;
}

/** Reads the frame at `pos` of `buf` (whose bytes end at `limit`), checking its CRC when `verify`. */
export function decodeFrame(buf: Buffer, pos: number, limit: number, verify = true): Decoded {
  if (limit - pos < FRAME_HEADER) return { torn: 'short' };
  const len = buf.readUInt32LE(pos);
  if (len < 1 || len > MAX_BODY) return { torn: 'length' };
  const body = pos + FRAME_HEADER;
  if (body + len > limit) return { torn: 'short' };
  if (verify && crc32(buf.subarray(body, body + len)) !== buf.readUInt32LE(pos + 4)) return { torn: 'crc' };
  const topicLen = buf.readUInt8(body);
  if (topicLen === 0) {
    try {
      const parsed = JSON.parse(buf.toString('utf8', body + 1, body + len)) as { ends: FrameHeader['ends'] };
      return { frame: { kind: 'header', ends: parsed.ends }, size: FRAME_HEADER + len };
    } catch {
      return { torn: 'body' };
    }
  }
  let p = body + 1;
  const topic = buf.toString('utf8', p, p + topicLen);
  p += topicLen;
  const partition = buf.readUInt16LE(p);
  const offset = buf.readDoubleLE(p + 2);
  const timestamp = buf.readDoubleLE(p + 10);
  const keyLen = buf.readUInt32LE(p + 18);
  p += 22;
  if (p + keyLen > body + len) return { torn: 'body' };
  const key = buf.toString('utf8', p, p + keyLen);
  const value = buf.toString('utf8', p + keyLen, body + len);
  return { frame: { kind: 'record', topic, partition, offset, timestamp, key, value }, size: FRAME_HEADER + len };
}
