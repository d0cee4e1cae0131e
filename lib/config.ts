import { z } from 'zod';
import { DAY_MS, type TopicRetention } from './retention.js';

/**
 * Environment, parsed once at start by each process's main.ts. No other module reads process.env.
 * A bad value stops start-up with the variable's name and the reason.
 */
const port = z.coerce.number().int().min(0).max(65535);
const optionalString = z
  .string()
  .optional()
  .transform((s) => (s && s.trim() !== '' ? s.trim() : undefined));

/** A comma-separated list of secrets, each long enough not to be guessed. */
const keyList = optionalString
  .transform((s) =>
    s
      ? s
          .split(',')
          .map((k) => k.trim())
          .filter(Boolean)
      : [],
  )
  .refine((keys) => keys.every((k) => k.length >= 16), 'each key needs at least 16 characters');

/** Days, fractions allowed (tests), from an hour to ten years. */
const retentionDays = (days: number) =>
  z.coerce
    .number()
    .min(1 / 24)
    .max(3650)
    .default(days);

export const Env = z.object({
  PORT: port.default(8080),
  HOST: z.string().default('127.0.0.1'),
  /** The standalone worker's /healthz, /readyz and /metrics (0: any free port; HOST is the address). */
  WORKER_PORT: port.default(9464),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Comma-separated host:port list. Unset: the embedded in-process log. */
  KAFKA_BROKERS: optionalString,
  KAFKA_CLIENT_ID: z.string().default('clickfold'),
  KAFKA_GROUP_ID: z.string().default('clickfold-history'),
  KAFKA_PARTITIONS: z.coerce.number().int().min(1).max(1024).default(6),
  KAFKA_REPLICATION_FACTOR: z.coerce.number().int().min(1).max(7).default(1),
  /**
   * Days each topic keeps its records (lib/retention.ts): set on the topics clickfold creates. The
   * README's Privacy section states what follows from them; tombstones of erased ids and
   * `history.erasures` are kept a little longer than clicks.raw, derived from it.
   */
  KAFKA_RAW_RETENTION_DAYS: retentionDays(30),
  KAFKA_INVALID_RETENTION_DAYS: retentionDays(7),
  KAFKA_TRANSITIONS_RETENTION_DAYS: retentionDays(7),
  KAFKA_PARKED_RETENTION_DAYS: retentionDays(14),
  /**
   * The client of the process's producers (ingest's records, the worker's transitions and dead
   * letters): `platformatic` (the default: @platformatic/kafka 1.x, the last line that runs on
   * Node 20) or `kafkajs`, the client the design names. Both send the same idempotent, acks=-1
   * records under the same queue (lib/kafka/producer.ts), keyed to the same partitions (Java's
   * murmur2); `npm run bench` measures both side by side, and platformatic spends about half the
   * CPU per record. Consumers, and WORKER_TRANSACTIONS' transactional producers, are kafkajs
   * whatever this says: the platformatic client carries no transactions here.
   */
  KAFKA_PRODUCER: z.enum(['kafkajs', 'platformatic'], { error: 'kafkajs or platformatic (transactions always use kafkajs)' }).default('platformatic'),
  /** A worker silent this long loses its partitions to the others (the broker allows 6 s to 30 min). */
  KAFKA_SESSION_TIMEOUT_MS: z.coerce.number().int().min(6000).max(1_800_000).default(30_000),
  /**
   * true: the worker publishes a batch's transitions and dead letters and commits its offsets in
   * one Kafka transaction (exactly once, zombies fenced). false (the default, as Kafka Streams'
   * at_least_once): published, then committed; a worker that dies in between publishes them again,
   * with the same ids. The bench prints what each costs: on 2 cores the transactions cost a quarter
   * of the fold's throughput and several times the click-to-stage latency.
   */
  WORKER_TRANSACTIONS: z.stringbool().default(false),
  /**
   * The fold's CRM steps after each batch's write: trend counters and the latest transitions,
   * cross-selling counters, the purchasers the CRM model samples. Off: none of them is kept (trends,
   * suggestions and the LTV model stay empty), for a deployment that wants only the stages.
   */
  WORKER_CRM_STEPS: z.stringbool().default(true),
  /** How long the broker lets a worker's transaction stay open before aborting it (a dead worker's, if nobody fences it sooner). */
  WORKER_TRANSACTION_TIMEOUT_MS: z.coerce.number().int().min(1000).max(900_000).default(10_000),
  /** redis://host:port. Unset: the embedded in-memory store. */
  REDIS_URL: optionalString,
  /** host:port,host:port of a Redis Cluster's nodes; used instead of REDIS_URL. */
  REDIS_CLUSTER_NODES: optionalString,
  /** Key prefix, so several deployments (or a replay) can share one Redis. */
  REDIS_PREFIX: z.string().default(''),
  /** Largest request body ingest reads, in bytes. */
  INGEST_MAX_BODY: z.coerce
    .number()
    .int()
    .min(1024)
    .max(16 * 1024 * 1024)
    .default(256 * 1024),
  /** How long ingest waits for Kafka's acknowledgement before answering 503. */
  INGEST_ACK_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(5000),
  /** Seconds a client is told to wait (Retry-After) when Kafka cannot take events. */
  INGEST_RETRY_AFTER_S: z.coerce.number().int().min(1).max(3600).default(2),
  /**
   * How many proxies you run in front of ingest (0: clients connect directly, the socket address
   * is the client's). `true` and `false`, the old values, mean 1 and 0. See lib/serve.ts
   * `pickForwarded` for how X-Forwarded-For is read.
   */
  TRUST_PROXY: z
    .string()
    .trim()
    .default('0')
    .transform((v) => (/^true$/i.test(v) ? '1' : /^(false|)$/i.test(v) ? '0' : v))
    .pipe(z.string().regex(/^\d{1,2}$/, 'the number of proxies in front of ingest (0 to 16), or true (1) / false (0)'))
    .transform(Number)
    .pipe(z.number().max(16, 'at most 16 proxies')),
  /**
   * Dead letters ingest writes to clicks.invalid per second and process; the rest are counted
   * (clickfold_ingest_dead_letters_sampled_out_total), not written, so a flood of junk can never
   * crowd real events out of the producer. 0: count only.
   */
  INGEST_DEAD_LETTERS_PER_SECOND: z.coerce.number().min(0).max(100_000).default(200),
  /** A JSON topic-map file; unset: the demo shop's map. */
  TOPIC_MAP: optionalString,
  /**
   * A JSON file of audiences (`{"audiences": {"name": definition}}`, contract/audience.ts), loaded at
   * start; they are read-only through the API. Unset: audiences come from the API only.
   */
  AUDIENCES_FILE: optionalString,
  /** A JSON sites file (origins, write keys, limits, bot policy); unset: the demo site only. */
  INGEST_SITES: optionalString,
  /** Secret for e-mail click-link signatures (HMAC-SHA256); unset: only allow-listed redirect hosts. */
  INGEST_LINK_SECRET: optionalString.refine((s) => s === undefined || s.length >= 16, 'at least 16 characters'),
  /** Largest Segment-compatible /v1/batch body, bytes (Segment's own limit is 500 KB). */
  INGEST_BATCH_MAX_BODY: z.coerce
    .number()
    .int()
    .min(32 * 1024)
    .max(16 * 1024 * 1024)
    .default(512 * 1024),
  /**
   * On SIGTERM, how long every process's HTTP server lets requests in flight finish before closing
   * their connections (event streams and idle keep-alive connections are closed at once).
   */
  INGEST_SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).max(120_000).default(10_000),
  /** Open `GET /v1/me/stream` streams per person (a visitor's tabs); past it 429 (ingest/me.ts). */
  INGEST_ME_STREAMS_PER_VISITOR: z.coerce.number().int().min(1).max(1000).default(8),
  /** Open `GET /v1/me/stream` streams per process; past it 429. */
  INGEST_ME_STREAMS_MAX: z.coerce.number().int().min(1).max(1_000_000).default(10_000),
  /**
   * The embedded mode's folder (`npm start` without Kafka and Redis), which keeps the log and the
   * snapshots of the histories across restarts, relative to the working directory. Unset: `npm
   * start` uses `.clickfold-data`, other embedders (tests, the bench) stay in memory. `memory` or
   * empty: nothing on disk, nothing kept across a restart. See apps/shared/embedded.ts dataDirOf.
   */
  DATA_DIR: z
    .string()
    .optional()
    .transform((s) => s?.trim()),
  /** The embedded log's bound (lib/log-retention.ts): past any of these the oldest segments go, never a record the worker has not folded. */
  EMBEDDED_LOG_MAX_EVENTS: z.coerce.number().int().min(1000).default(1_000_000),
  EMBEDDED_LOG_MAX_MB: z.coerce.number().min(1).default(256),
  EMBEDDED_LOG_MAX_AGE_HOURS: z.coerce.number().positive().default(168),
  /** With a data directory: how often the histories and the groups' offsets are written (when anything changed); a crash folds again what came since. */
  EMBEDDED_SNAPSHOT_INTERVAL_S: z.coerce.number().int().min(1).max(86_400).default(60),
  /** How often the worker holding the lease recomputes the CRM model (RFM quintiles, lifetime value), s (README "Lifetime value and RFM by quantiles"). */
  CRM_MODEL_INTERVAL_S: z.coerce.number().int().min(10).max(86_400).default(600),
  /** Purchasers sampled per computation: the fit's time grows with it (about 2 s at 20,000 measured, up to 4 s). */
  CRM_MODEL_SAMPLE: z.coerce.number().int().min(20).max(200_000).default(20_000),
  /** The horizon of projected lifetime value, days. */
  CRM_LTV_HORIZON_DAYS: z.coerce.number().int().min(1).max(3650).default(365),
  /** Query API keys with full access (read and erase), comma-separated. Required on the real stack. */
  API_KEYS: keyList,
  /** Query API keys that may only read (no erase), comma-separated. */
  API_READ_KEYS: keyList,
  /**
   * Comma-separated http(s) URLs (history/transitions/webhooks.ts); each receives stage transitions, or
   * the kinds it names after `#kinds=` (`stage`, `stalled`, `entered`, `exited`, joined by `+`).
   */
  WEBHOOK_URLS: optionalString
    .transform((s) =>
      s
        ? s
            .split(',')
            .map((u) => u.trim())
            .filter(Boolean)
        : [],
    )
    .refine((urls) => urls.every((u) => /^https?:\/\/[^\s]+$/.test(u) && URL.canParse(u)), 'each entry must be an http:// or https:// URL'),
  /** HMAC-SHA256 key that signs webhook deliveries; required with WEBHOOK_URLS. */
  WEBHOOK_SECRET: optionalString.refine((s) => s === undefined || s.length >= 16, 'at least 16 characters'),
  /** Longest pause between two attempts to deliver to a webhook that keeps failing, ms (the pause doubles from 250 ms). */
  WEBHOOK_RETRY_MAX_MS: z.coerce.number().int().min(100).max(3_600_000).default(60_000),
});
export type Env = z.infer<typeof Env>;

/** The topics' retention from the environment. */
export function retentionOf(env: Env): TopicRetention {
  const ms = (days: number) => Math.round(days * DAY_MS);
  return {
    rawMs: ms(env.KAFKA_RAW_RETENTION_DAYS),
    invalidMs: ms(env.KAFKA_INVALID_RETENTION_DAYS),
    transitionsMs: ms(env.KAFKA_TRANSITIONS_RETENTION_DAYS),
    parkedMs: ms(env.KAFKA_PARKED_RETENTION_DAYS),
  };
}

export function parseEnv(env: NodeJS.ProcessEnv = process.env): Env {
  const r = Env.safeParse(env);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new Error(`invalid configuration:\n${lines.join('\n')}`);
  }
  return r.data;
}
