import { Cluster, Redis } from 'ioredis';
import type { Env } from './config.js';
import type { Logger } from './logger.js';

/** Whether the environment names a Redis (one server or a cluster). */
export const hasRedis = (env: Env): boolean => !!(env.REDIS_URL || env.REDIS_CLUSTER_NODES);

/**
 * One Redis or a Redis Cluster, from REDIS_URL or REDIS_CLUSTER_NODES. Commands wait for the
 * server instead of failing while it is away: a worker must pause, not skip. Autopipelining
 * groups the commands a batch sends at once into one round trip per node.
 */
export function createRedis(env: Env): Redis | Cluster {
  if (env.REDIS_CLUSTER_NODES) {
    const nodes = env.REDIS_CLUSTER_NODES.split(',').map((hp) => {
      const [host = '127.0.0.1', port = '6379'] = hp.trim().split(':');
      return { host, port: Number(port) };
    });
    return new Cluster(nodes, { enableAutoPipelining: true, redisOptions: { maxRetriesPerRequest: null } });
  }
  if (!env.REDIS_URL) throw new Error('set REDIS_URL or REDIS_CLUSTER_NODES');
  return new Redis(env.REDIS_URL, { maxRetriesPerRequest: null });
}

/** Where a node is, for messages. */
const nodeName = (node: Redis): string => `${node.options.host ?? '127.0.0.1'}:${node.options.port ?? 6379}`;

/**
 * Refuses a Redis that evicts keys it holds without a TTL. Histories, stage indexes, linked ids and
 * transition outboxes have none and exist nowhere else (a replay from `clicks.raw` rebuilds them
 * only as far back as Kafka keeps records), so an `allkeys-*` policy would lose them silently when
 * memory is full. `noeviction` is what the worker expects: a full Redis refuses writes, the worker
 * retries the batch and says so on /readyz, nothing is lost.
 *
 * `volatile-*` is accepted with a warning: it evicts only keys with a TTL, here the recent event-id
 * fingerprints (`r:{person}`, a day), the saved rankings behind `needs` cursors (15 minutes), and the
 * tombstones of erased ids (`e:{person}`) with their erase markers. Under memory pressure a client
 * retry of an event whose fingerprint was evicted then counts twice, a cursor may expire early, and
 * a late record of an erased person whose tombstone was evicted folds again (replays still honour
 * `history.erasures`); histories are never evicted, and once no key with a TTL is left
 * Redis refuses writes as with `noeviction`. Managed Redis often defaults to `volatile-lru`.
 *
 * CONFIG may be renamed or forbidden (managed Redis, ACLs): then the policy cannot be read, which
 * is logged, and the start goes on. On a cluster every master is checked.
 */
export async function checkEvictionPolicy(redis: Redis | Cluster, logger: Logger): Promise<void> {
  let nodes: Redis[];
  if (redis instanceof Cluster) {
    // The list of masters is known once the cluster is connected; ping waits for it.
    await redis.ping();
    nodes = redis.nodes('master');
  } else {
    nodes = [redis];
  }
  for (const node of nodes) {
    let policy: string | undefined;
    try {
      const reply = await node.config('GET', 'maxmemory-policy');
      policy = Array.isArray(reply) && typeof reply[1] === 'string' ? reply[1] : undefined;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (!/unknown command|NOPERM|no permission|not allowed/i.test(message)) throw err;
      logger.warn(
        { node: nodeName(node), err: message },
        'cannot read Redis maxmemory-policy (CONFIG is disabled or not permitted); make sure it is noeviction',
      );
      continue;
    }
    if (policy === undefined) {
      logger.warn({ node: nodeName(node) }, 'Redis did not report maxmemory-policy; make sure it is noeviction');
    } else if (policy.startsWith('allkeys-')) {
      throw new Error(
        `Redis ${nodeName(node)} has maxmemory-policy ${policy}: when memory is full it evicts any key, histories included, and they would be lost without a word. ` +
          'Set maxmemory-policy noeviction (in redis.conf, or CONFIG SET maxmemory-policy noeviction): a full Redis then refuses writes, the worker waits and /readyz says why.',
      );
    } else if (policy.startsWith('volatile-')) {
      logger.warn(
        { node: nodeName(node), policy },
        `Redis evicts keys with a TTL when full (maxmemory-policy ${policy}): histories are safe, but a client retry whose event fingerprint was evicted counts twice, and a late record of an erased person whose tombstone was evicted folds again; noeviction avoids that`,
      );
    } else if (policy !== 'noeviction') {
      throw new Error(`Redis ${nodeName(node)} has maxmemory-policy ${policy}, which this version of clickfold does not know; set noeviction`);
    }
  }
}

export type RedisErrorKind = 'oom' | 'connection' | 'other';

/** The error and the errors it wraps (cause chains, AggregateError), for classification. */
function* errorChain(err: unknown, depth = 0): Generator<Error> {
  if (!(err instanceof Error) || depth > 5) return;
  yield err;
  if (err instanceof AggregateError) for (const e of err.errors) yield* errorChain(e, depth + 1);
  yield* errorChain(err.cause, depth + 1);
}

/** `OOM command not allowed when used memory > 'maxmemory'`, also when a script or a wrapper carries it. */
export function isRedisOom(err: unknown): boolean {
  for (const e of errorChain(err)) if (/\bOOM command not allowed\b/.test(e.message)) return true;
  return false;
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/** A Redis error's kind, or undefined when the error does not come from Redis. */
export function redisErrorKind(err: unknown): RedisErrorKind | undefined {
  if (isRedisOom(err)) return 'oom';
  for (const e of errorChain(err)) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && CONNECTION_CODES.has(code)) return 'connection';
    if (
      ['MaxRetriesPerRequestError', 'ClusterAllFailedError'].includes(e.name) ||
      /Connection is closed|Failed to refresh slots cache|None of startup nodes is available/.test(e.message)
    )
      return 'connection';
    if (e.name === 'ReplyError') return 'other';
  }
  return undefined;
}

export interface RedisStatus {
  ready: boolean;
  reason?: string;
}

/**
 * Watches one client (or cluster) for what /readyz and the metrics need: its connection errors
 * (ioredis 'error' events, which without a listener it prints unstructured to stderr), logged at
 * warn at most every 30 s, and out-of-memory refusals reported by the caller, which keep it not
 * ready until a write gets through again.
 */
export class RedisWatch {
  private readonly listeners: ((kind: RedisErrorKind) => void)[] = [];
  private connectionError: string | undefined;
  private lastWarned = 0;
  private oom: { since: number; error: string } | undefined;

  constructor(
    private readonly client: Redis | Cluster,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    const onError = (err: unknown) => this.connectionFailed(err);
    client.on('error', onError);
    if (client instanceof Cluster) client.on('node error', onError);
    client.on('ready', () => {
      if (this.connectionError === undefined) return;
      this.logger.info({ err: this.connectionError }, 'Redis is reachable again');
      this.connectionError = undefined;
    });
  }

  /** Called with the kind of every Redis error seen (for a counter). */
  onError(listener: (kind: RedisErrorKind) => void): void {
    this.listeners.push(listener);
  }

  private emit(kind: RedisErrorKind): void {
    for (const l of this.listeners) l(kind);
  }

  private connectionFailed(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    this.emit(redisErrorKind(err) === 'other' ? 'other' : 'connection');
    const first = this.connectionError === undefined;
    this.connectionError = message;
    if (first || this.now() - this.lastWarned >= 30_000) {
      this.lastWarned = this.now();
      this.logger.warn({ err: message, status: this.client.status }, 'Redis connection error; commands wait until it is back');
    }
  }

  /**
   * A command failed in the caller (the worker's batch). Out of memory is remembered until
   * writeSucceeded(); connection errors were already counted from the client's events.
   */
  commandFailed(err: unknown): void {
    const kind = redisErrorKind(err);
    if (kind === 'oom') {
      this.emit('oom');
      const message = [...errorChain(err)].find((e) => isRedisOom(e))?.message ?? String(err);
      if (!this.oom) {
        this.logger.error({ err: message }, 'Redis is out of memory and refuses writes: the worker retries until it has room (raise maxmemory or add shards)');
        this.oom = { since: this.now(), error: message };
      }
    } else if (kind === 'other') {
      this.emit('other');
    }
  }

  /** A write got through: Redis has room again. */
  writeSucceeded(): void {
    if (!this.oom) return;
    this.logger.info({ outOfMemoryForMs: this.now() - this.oom.since }, 'Redis takes writes again');
    this.oom = undefined;
  }

  status(): RedisStatus {
    if (this.oom) return { ready: false, reason: `Redis is out of memory since ${new Date(this.oom.since).toISOString()}: ${this.oom.error}` };
    if (this.client.status !== 'ready')
      return { ready: false, reason: `Redis is ${this.client.status}${this.connectionError ? `: ${this.connectionError}` : ''}` };
    return { ready: true };
  }
}
