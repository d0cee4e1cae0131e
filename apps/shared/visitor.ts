import type { HistoryStore } from '../../history/store/store.js';
import type { LiveFeed } from '../../history/transitions/live-feed.js';
import type { IngestOptions } from '../../ingest/app.js';
import type { VisitorSource } from '../../ingest/me.js';
import type { Env } from '../../lib/config.js';

/**
 * The visitor API's view of the history (ingest/me.ts): the store's person read, cut down to what a
 * page may see, and the process's live feed of `history.transitions`. Ingest imports no history
 * code; this is where the two meet.
 */
export function visitorSource(store: HistoryStore, feed: LiveFeed): VisitorSource {
  return {
    ladder: store.options.ladder,
    read: async (id) => {
      const p = await store.getPerson(id);
      return p && { person: p.person, dialogues: p.dialogues.map((d) => ({ topic: d.topic, stage: d.stage, started: Date.parse(d.started) })) };
    },
    follow: (fn, onClose) => feed.subscribe({ kinds: ['stage'] }, fn, onClose),
  };
}

/** Ingest's `visitor` option from the environment (INGEST_ME_STREAMS_PER_VISITOR, INGEST_ME_STREAMS_MAX). */
export function visitorOptionsFromEnv(env: Env, store: HistoryStore, feed: LiveFeed): NonNullable<IngestOptions['visitor']> {
  return { source: visitorSource(store, feed), streamsPerPerson: env.INGEST_ME_STREAMS_PER_VISITOR, streamsPerProcess: env.INGEST_ME_STREAMS_MAX };
}
