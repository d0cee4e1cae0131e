import { createScenario } from '../load/scenario.js';
import type { CollectBody } from '../load/scenario.js';

/**
 * The load scenario (load/scenario.js) with its ever-new visitor ids folded onto a steady
 * population (`visitors`, and a fifth as many signed-in users): the returning visitors of a small
 * shop, whose histories stop growing in number once each has come by, where the plain scenario
 * makes new people forever. Ids are folded with FNV-1a, so a visitor's batches stay together.
 */
export function pooledScenario(opts: { seed: number; visitors: number; skus?: number; batchSize?: number }) {
  const scenario = createScenario({ seed: opts.seed, batchSize: opts.batchSize ?? 10, skus: opts.skus ?? 300 });
  const users = Math.max(1, Math.floor(opts.visitors / 5));
  return {
    nextBatch(now: number): { body: CollectBody; userAgent: string } {
      const b = scenario.nextBatch(now);
      const body: CollectBody = { ...b.body, visitor: pooled('v', b.body.visitor, opts.visitors) };
      if (body.user) body.user = pooled('u', body.user, users);
      body.events = body.events.map((e) => (e.user ? { ...e, user: pooled('u', e.user, users) } : e));
      return { body, userAgent: b.userAgent };
    },
  };
}

function pooled(prefix: string, id: string, size: number): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return `${prefix}${(h >>> 0) % size}`;
}
