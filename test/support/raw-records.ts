import type { RawEvent } from '../../contract/raw-event.js';

/** A page view on the demo site as ingest writes it to clicks.raw: event `i` of `person`, at `now + i`. */
export const rawPage = (person: string, i: number, url: string, now: number): RawEvent => ({
  v: 1,
  id: `${person}-${i}`,
  site: 'demo',
  person,
  visitor: person,
  channel: 'web',
  type: 'page',
  ts: now + i,
  rt: now + i,
  url,
});
