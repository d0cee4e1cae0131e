/**
 * What an audience costs in Redis per member, after the click-to-entered run (whose app folds into
 * the `lat:` namespace): the member set (`am:{audience}`, a sorted set: the id and the time entered)
 * by MEMORY USAGE over its members, and the membership each member's person hash keeps (`a`:
 * name:entered-at), by the bytes of that field. README "Stalls and audiences" quotes these.
 */
import { Redis } from 'ioredis';
import { AUDIENCE_PREFIX } from '../../history/fold/codec.js';
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
    const name = AUDIENCE_PREFIX + BENCH_AUDIENCE;
    for (const person of sample) field += (await redis.hget(keys.person(ns, person), name))?.length ?? 0;
    // The field's name and the listpack's per-entry headers (about two bytes each) come with each value.
    const perHash = sample.length ? field / sample.length + name.length + 4 : 0;
    return {
      figures: {
        audienceBytesPerMember: {
          key: 'audience.bytesPerMember',
          what: `Redis bytes per audience member: the member set (MEMORY USAGE of ${members.toLocaleString('en-US')} members) + the membership in the person hash`,
          unit: 'B',
          value: members ? round(set / members + perHash) : NaN,
          note: `member set ${members ? round(set / members) : 'n/a'} B, person hash field ${round(perHash)} B (a:${BENCH_AUDIENCE} -> the time entered)`,
        },
      },
    };
  } finally {
    redis.disconnect();
  }
}
