import type { Dialogue, PersonHistory } from '../../contract/query.js';
import { decodeList, decodeState, type Fields } from '../fold/codec.js';
import { F } from '../fold/person-batch.js';

/**
 * What the query API shows of a person, as the stores read it: the shapes are the API's
 * (contract/query.ts), which adds the RFM scores and recent transitions it derives from these.
 * Times are ISO strings: marketers read them.
 */
export type DialogueView = Dialogue;
export type PersonView = PersonHistory;

const iso = (ms: number) => new Date(ms).toISOString();

export function personView(person: string, fields: Fields, ladder: readonly string[]): PersonView {
  const state = decodeState(fields);
  const dialogues: DialogueView[] = [];
  for (const [topic, d] of state.dialogues) {
    const firstReached: Record<string, string> = {};
    const counts: Record<string, number> = {};
    ladder.forEach((name, i) => {
      const f = d.first[i] ?? 0;
      if (f !== 0) firstReached[name] = iso(f);
      counts[name] = d.counts[i] ?? 0;
    });
    dialogues.push({
      topic,
      stage: ladder[d.stage] ?? String(d.stage),
      started: iso(d.start),
      lastActivity: iso(d.last),
      firstReached,
      counts,
      channels: d.channels,
      // fromEntries: a signal named like an Object member is just a signal.
      signals: Object.fromEntries((d.signals ?? []).map((x) => [x.name, { count: x.count, open: x.open }])),
    });
  }
  // Most recent first; the topic breaks ties, so every store lists the same dialogues in the same order.
  dialogues.sort((a, b) =>
    a.lastActivity !== b.lastActivity ? (a.lastActivity < b.lastActivity ? 1 : -1) : a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0,
  );
  const rfm = state.rfm
    ? { firstPurchase: iso(state.rfm.first), lastPurchase: iso(state.rfm.last), purchases: state.rfm.count, totalValue: state.rfm.total }
    : null;
  const linkedIds = decodeList(fields[F.linked]);
  // By name, so every store shows the same object; fromEntries defines own properties, whatever the name.
  const traits = Object.fromEntries([...(state.traits ?? [])].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)));
  return { person, linkedIds, traits, dialogues, rfm };
}

/** Whether a hash holds anything to show (a sealed visitor holds only its pointer; an erased id its tombstone). */
export function hasHistory(fields: Fields | null | undefined): fields is Fields {
  return !!fields && Object.keys(fields).some((k) => k !== F.alias && k !== F.offsets && k !== F.version && k !== F.erased);
}
