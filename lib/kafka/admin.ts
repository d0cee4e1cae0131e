import type { Admin, Kafka } from 'kafkajs';
import type { StartAt } from '../log.js';
import type { Logger } from '../logger.js';

/**
 * One kafkajs admin client, connected on first use and shared (the Log adapter's offsets, every
 * consumer's lag, group set-up and removal). A failed connect is tried again on the next use.
 */
export class LazyAdmin {
  private admin: Admin | undefined;
  private connecting: Promise<Admin> | undefined;

  constructor(private readonly kafka: Kafka) {}

  get(): Promise<Admin> {
    if (this.admin) return Promise.resolve(this.admin);
    this.connecting ??= (async () => {
      const admin = this.kafka.admin();
      try {
        await admin.connect();
      } catch (err) {
        this.connecting = undefined;
        throw err;
      }
      this.admin = admin;
      return admin;
    })();
    return this.connecting;
  }

  async close(): Promise<void> {
    const admin = this.admin ?? (await this.connecting?.catch(() => undefined));
    this.admin = undefined;
    this.connecting = undefined;
    await admin?.disconnect();
  }
}

/** The group's committed offset of one partition (the next record it reads), or undefined when it never committed there. */
export async function committedOffset(admin: Admin, group: string, topic: string, partition: number): Promise<bigint | undefined> {
  const [t] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  const offset = t?.partitions.find((p) => p.partition === partition)?.offset;
  return offset === undefined || BigInt(offset) < 0n ? undefined : BigInt(offset);
}

/** Per partition, the offset at `at` (see Log.offsets). */
export async function offsetsAt(admin: Admin, topic: string, at: StartAt): Promise<Map<number, string>> {
  if (typeof at === 'object') {
    // kafkajs answers the end for a partition with nothing at or after the time.
    const byTime = await admin.fetchTopicOffsetsByTimestamp(topic, at.timestamp);
    return new Map(byTime.map((p) => [p.partition, p.offset]));
  }
  const ends = await whenReady(() => admin.fetchTopicOffsets(topic));
  return new Map(ends.map((p) => [p.partition, at === 'beginning' ? p.low : p.high]));
}

/** Runs `fn` again while Kafka answers "not yet" (see NOT_YET), for up to `timeoutMs`. */
export async function whenReady<T>(fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!notYet(err) || Date.now() > until) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/**
 * Sets a group that never committed on `topic` to its start, so that it starts there
 * deterministically (kafkajs's `fromBeginning: false` resolves "latest" only at its first fetch,
 * which may miss records written in between; it has no start at a time). 'beginning' is left to
 * kafkajs (`fromBeginning: true`), which resolves the same.
 */
export async function startNewGroupAt(kafka: Kafka, admin: Admin, group: string, topic: string, at: StartAt, logger: Logger | undefined): Promise<void> {
  if (at === 'beginning') return;
  try {
    const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    if (committed?.partitions.some((p) => Number(p.offset) >= 0)) return;
    const { groups } = await admin.describeGroups([group]);
    // Another member of the group is already running: it did this, or will commit.
    if (groups.some((g) => g.state !== 'Empty' && g.state !== 'Dead')) return;
    await commitOffsets(kafka, admin, group, topic, await offsetsAt(admin, topic, at));
  } catch (err) {
    // kafkajs's own start then applies ('latest' resolved at the first fetch for 'end', the oldest for a time).
    logger?.warn(
      { err: err instanceof Error ? err.message : String(err), group, topic, startAt: at },
      'could not set the start offsets of a new consumer group',
    );
  }
}

/**
 * Commits `offsets` for a group nobody runs, as kafkajs's `admin.setOffsets` does (a paused member
 * whose seeks commit before each fetch), without waiting out that member's 5 s first fetch, and
 * until the group's offsets show every partition (a fetch per broker commits only its partitions).
 */
async function commitOffsets(kafka: Kafka, admin: Admin, group: string, topic: string, offsets: Map<number, string>): Promise<void> {
  const consumer = kafka.consumer({ groupId: group, maxWaitTimeInMs: 10 });
  let timer: NodeJS.Timeout | undefined;
  try {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      let checking = false;
      const check = async () => {
        if (checking) return;
        checking = true;
        try {
          const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
          const at = new Map((committed?.partitions ?? []).map((p) => [p.partition, p.offset]));
          if ([...offsets].every(([p, o]) => at.get(p) === o)) resolve();
        } catch {
          // The coordinator moving or loading (a broker starting): asked again after the next fetch.
        } finally {
          checking = false;
        }
      };
      timer = setTimeout(() => reject(new Error(`the start offsets of group ${group} were not committed within 30 s`)), 30_000);
      consumer.on(consumer.events.FETCH, () => void check());
      consumer.run({ eachBatchAutoResolve: false, eachBatch: async () => {} }).catch(reject);
      consumer.pause([{ topic }]);
      for (const [partition, offset] of offsets) consumer.seek({ topic, partition, offset });
    });
  } finally {
    clearTimeout(timer);
    await consumer.disconnect();
  }
}

/** Deletes a group and its committed offsets (an ephemeral group, after its member left). */
export async function deleteGroup(admin: Admin, group: string, logger: Logger | undefined): Promise<void> {
  try {
    await admin.deleteGroups([group]);
  } catch (err) {
    logger?.debug({ err, group }, 'could not delete a consumer group');
  }
}

/** Answers that mean "not yet" right after a topic is created (or a broker restarted), while its leaders are elected and loaded. */
const NOT_YET =
  /UNKNOWN_TOPIC_OR_PARTITION|LEADER_NOT_AVAILABLE|NOT_LEADER_FOR_PARTITION|NOT_LEADER_OR_FOLLOWER|does not host this topic-partition|no leader for this topic-partition|not the leader for that topic-partition/i;

export const notYet = (err: unknown): boolean => {
  const e = err as { type?: string; message?: string; originalError?: { type?: string; message?: string } };
  return [e.type, e.message, e.originalError?.type, e.originalError?.message].some((s) => typeof s === 'string' && NOT_YET.test(s));
};

/**
 * Creates topics and resolves once every partition of each has a leader. kafkajs's own
 * `waitForLeaders` gives up when the metadata request meets "this server does not host this
 * topic-partition" (a broker that has not heard of the topic yet: seen here under load), so the wait
 * polls the metadata itself and takes those answers for "not yet". Resolves with whether a topic was
 * created (false: they all existed).
 */
export async function createTopicsReady(admin: Admin, topics: Parameters<Admin['createTopics']>[0]['topics'], timeoutMs = 30_000): Promise<boolean> {
  const created = await admin.createTopics({ topics, waitForLeaders: false });
  const names = topics.map((t) => t.topic);
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      const md = await admin.fetchTopicMetadata({ topics: names });
      if (md.topics.length === names.length && md.topics.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0))) return created;
    } catch (err) {
      if (!notYet(err)) throw err;
    }
    if (Date.now() > until) throw new Error(`topics ${names.join(', ')} have no leader for every partition after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
