import { Hono } from 'hono';
import { httpError, onError } from '../ingest/errors.js';
import type { Logger } from '../lib/logger.js';
import type { HistoryStore } from './store.js';

export interface QueryApiOptions {
  store: HistoryStore;
  logger: Logger;
}

/** The marketers' query API over the folded history. */
export function createQueryApp(opts: QueryApiOptions): Hono {
  const app = new Hono();
  app.onError(onError(opts.logger));

  app.get('/v1/people/:person', async (c) => {
    const person = c.req.param('person');
    if (person.length > 128) throw httpError(400, 'invalid_person', 'a person id has at most 128 characters');
    const view = await opts.store.getPerson(person);
    if (!view) throw httpError(404, 'unknown_person', `no history for person "${person}"`);
    return c.json(view);
  });

  return app;
}
