/**
 * What an audience costs in Redis per member, after the click-to-entered run (whose app folds into
 * the `lat:` namespace): the member set (`am:{audience}`, a sorted set: the id and the time entered)
 * by MEMORY USAGE over its members, and the membership each member's person hash keeps (`a`:
 * name:entered-at), by the bytes of that field. README "Stalls and audiences" quotes these.
 */
import { Redis } from 'ioredis';
import { F } from '../../history/fold/codec.js';
import { keys } from '../../history/store/store.js';
import type { Services } from '../harness.js';
import { BENCH_AUDIENCE } from '../lib.js';
import { round, type Figure } from '../report.js';

export async function measureAudienceMemory(services: Pick<Services, 'redis'>, ns: string): Promise<{ figures: { audienceBytesPerMember: Figure } }> {
  const redis = new Redis(services.redis.url);
  try {
    const key = keys.audienceMembers(ns, BENCH_AUDIENCE);
    const members = await redis.zcard(key);
    const set = Number((await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) ?? 0);
    const sample = await redis.zrange(key, 0, 999);
    let field = 0;
    for (const person of sample) field += (await redis.hget(keys.person(ns, person), F.audiences))?.length ?? 0;
    // The field name (one byte) and the listpack's per-entry header (about two bytes) come with each value.
    const perHash = sample.length ? field / sample.length + 3 : 0;
    return {
      figures: {
        audienceBytesPerMember: {
          key: 'audience.bytesPerMember',
          what: `Redis bytes per audience member: the member set (MEMORY USAGE of ${members.toLocaleString('en-US')} members) + the membership in the person hash`,
          unit: 'B',
          value: members ? round(set / members + perHash) : NaN,
          note: `member set ${members ? round(set / members) : 'n/a'} B, person hash field ${round(perHash)} B (name "${BENCH_AUDIENCE}" and the time entered)`,
        },
      },
    };
  } finally {
    redis.disconnect();
  }
}
