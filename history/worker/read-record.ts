import { PERSON_ID, RAW_LIMITS, RawEvent, SITE_ID, traitsProblem } from '../../contract/raw-event.js';

/** A record of `clicks.raw` read, or why it cannot be. */
export type Read = { ok: true; event: RawEvent } | { ok: false; reason: 'invalid_json' | 'invalid_record'; detail: string };

const TYPES = new Set(['page', 'click', 'track', 'identify', 'tick']);
const str = (v: unknown, max: number) => typeof v === 'string' && v.length <= max;
const optStr = (v: unknown, max: number) => v === undefined || str(v, max);
const optId = (v: unknown) => v === undefined || (typeof v === 'string' && PERSON_ID.test(v));

/**
 * The fields the worker reads, checked by hand against the contract's bounds: this runs on every
 * record, and the full zod parse (a tenth of the worker's CPU) runs only to explain a record that
 * fails here.
 */
function readable(j: unknown): j is RawEvent {
  if (typeof j !== 'object' || j === null) return false;
  const r = j as Record<string, unknown>;
  return (
    r.v === 1 &&
    typeof r.id === 'string' &&
    r.id.length > 0 &&
    r.id.length <= RAW_LIMITS.idLength &&
    typeof r.site === 'string' &&
    SITE_ID.test(r.site) &&
    typeof r.person === 'string' &&
    PERSON_ID.test(r.person) &&
    typeof r.channel === 'string' &&
    r.channel.length <= 32 &&
    /^[a-z][a-z0-9_-]*$/.test(r.channel) &&
    TYPES.has(r.type as string) &&
    Number.isFinite(r.ts) &&
    Number.isFinite(r.rt) &&
    optStr(r.url, RAW_LIMITS.textLength) &&
    optStr(r.topic, RAW_LIMITS.nameLength) &&
    optStr(r.stage, 64) &&
    optStr(r.name, RAW_LIMITS.nameLength) &&
    optId(r.visitor) &&
    optId(r.user) &&
    (r.value === undefined || Number.isFinite(r.value)) &&
    (r.props === undefined || (typeof r.props === 'object' && r.props !== null && !Array.isArray(r.props))) &&
    // Checked in full: the fold writes every trait into the person's hash.
    (r.traits === undefined || traitsProblem(r.traits) === null)
  );
}

/** Reads one record of `clicks.raw`: a record from a buggy or compromised producer is told apart here. */
export function readRecord(value: string): Read {
  let json: unknown;
  try {
    json = JSON.parse(value);
  } catch (err) {
    return { ok: false, reason: 'invalid_json', detail: `not JSON: ${(err as Error).message}` };
  }
  if (readable(json)) return { ok: true, event: json };
  const r = RawEvent.safeParse(json);
  if (r.success) return { ok: true, event: r.data };
  return { ok: false, reason: 'invalid_record', detail: `not a raw event: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}` };
}
