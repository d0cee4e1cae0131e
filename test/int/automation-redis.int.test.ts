import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AudienceDefinition } from '../../contract/audience.js';
import { compileAudience } from '../../history/audiences/membership.js';
import { createAutomation } from '../../history/automation/evaluate.js';
import { keys } from '../../history/store/store.js';
import { RedisHistoryStore } from '../../history/store/redis.js';
import { automationContract } from '../support/automation-contract.js';
import { deleteNamespace, inspectNamespace } from '../support/redis-inspect.js';
import { redisClient } from '../support/services.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';

// The same suite as the memory store's, on one Redis and on a three-master cluster (the stalled
// sets in the topic's slot, the audience sets and the queue in their own).
for (const [name, kind] of [
  ['Redis', 'real'],
  ['Redis Cluster', 'cluster'],
] as const) {
  const redis = redisClient(kind);
  const namespaces: string[] = [];
  automationContract(
    name,
    async () => {
      const ns = `a-${randomUUID().slice(0, 8)}:`;
      namespaces.push(ns);
      const store = new RedisHistoryStore(redis, FOLD_OPTIONS, ns);
      let now = 0;
      store.clock = () => now;
      return {
        store,
        inspect: () => inspectNamespace(redis, ns),
        setNow: (ms) => {
          now = ms;
        },
      };
    },
    async () => {
      for (const ns of namespaces) await deleteNamespace(redis, ns);
      redis.disconnect();
    },
  );
}

describe('audience memberships in the person hash (Redis)', () => {
  it('keep the hash a listpack with a person in many audiences: one small field each', async () => {
    const redis = redisClient('real');
    const ns = `a-${randomUUID().slice(0, 8)}:`;
    try {
      const store = new RedisHistoryStore(redis, FOLD_OPTIONS, ns);
      const ctx = { ladder: FOLD_OPTIONS.ladder, quietMs: FOLD_OPTIONS.quietMs, stallRules: new Set<string>() };
      const names = Array.from({ length: 12 }, (_, i) => `an-audience-with-a-long-name-${i}`);
      store.setAutomation(
        createAutomation({
          ladder: FOLD_OPTIONS.ladder,
          quietMs: FOLD_OPTIONS.quietMs,
          stallRules: [],
          audiences: names.map((name) => ({ name, compiled: compileAudience(AudienceDefinition.parse({ atLeast: 'intro' }), ctx) })),
        }),
      );
      const now = Date.now();
      await (
        await store.foldBatch('0', [{ offset: 0, person: 'many', rt: now, event: { id: 'e1', ts: now, channel: 'web', topic: 'product:a', stage: 1 } }])
      ).published();
      for (const name of names) expect(await store.automationCount({ audience: name })).toBe(1);
      expect(await redis.call('OBJECT', 'ENCODING', keys.person(ns, 'many'))).toBe('listpack');
      await store.erase('many', now + 1);
      for (const name of names) expect(await store.automationCount({ audience: name })).toBe(0);
    } finally {
      await deleteNamespace(redis, ns);
      redis.disconnect();
    }
  });
});
