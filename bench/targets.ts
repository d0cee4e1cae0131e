/**
 * The targets `npm run bench` checks, in one place: every figure with a target is printed against
 * it (the table's `target` column and its ok / MISS verdict). Change a target here and only here;
 * the README's table of a run quotes these numbers.
 *
 * A target is a comparison with a number: a figure meets it when `figure op value` holds.
 */

export interface Target {
  /** How the measured figure must compare with `value` to meet the target. */
  readonly op: '>=' | '<=' | '<';
  readonly value: number;
  readonly unit: string;
}

export const TARGETS = {
  /**
   * Ingest throughput: events per second that ingest (createIngestApp + KafkaLogProducer, one
   * process) acknowledges with 202 once Kafka has them, under 100 connections of 10-event batches.
   */
  ingest: { op: '>=', value: 30_000, unit: 'events/s' },
  /**
   * Ingest latency: p99 of a collect request (POST to 202, measured from its intended send time)
   * at half the ingest throughput measured in the same run.
   */
  ingestP99: { op: '<', value: 25, unit: 'ms' },
  /**
   * Ingest's overhead over Kafka: ingest throughput divided by the best throughput of the kafkajs
   * producer alone sending the same records with the same settings (a floor measured in the same
   * run, so the ratio does not depend on the machine).
   */
  ratio: { op: '>=', value: 0.5, unit: 'x' },
  /**
   * Ingest's CPU over its floor: the ingest process's CPU per event at full load divided by the
   * sum of what the work needs, measured in the same run: a Hono route that only parses the JSON
   * (context.hono.cpu) plus the raw producer of the same client sending the same records (raw.cpu).
   */
  ingestCpuRatio: { op: '<=', value: 1.5, unit: 'x' },
  /** Fold throughput: events per second one worker process folds from clicks.raw into Redis (until lag 0). */
  fold: { op: '>=', value: 50_000, unit: 'events/s' },
  /**
   * The worker's CPU over its floor: the whole worker's CPU per event (the fold runs) divided by
   * the consumer alone (no-op handler) plus the batch handler on Redis without Kafka, same records.
   */
  foldCpuRatio: { op: '<=', value: 1.3, unit: 'x' },
  /**
   * Click to queryable stage: p99 of the time from sending a probe's POST to the worker handing
   * its `purchase` transition to onTransitions (after the Redis write), with no probe missing,
   * under the load of `clickRate`. `clickP99`: the all-in-one process (`npm start` on Kafka and
   * Redis, ingest and worker sharing one event loop); `clickP99Split`: ingest and worker processes.
   */
  clickP99: { op: '<', value: 50, unit: 'ms' },
  clickP99Split: { op: '<', value: 25, unit: 'ms' },
  /**
   * Click to the page's own `stages` callback: p99 of the time from sending a probe's POST to the
   * `GET /v1/me/stream` message in which its product stands at purchase (what the snippet's add-on
   * hands the page's callback), under the load of `clickRate`, all-in-one and split alike.
   */
  callbackP99: { op: '<', value: 100, unit: 'ms' },
  /**
   * Click to `entered`: p99 of the time from sending a probe's POST to the `entered` event of the
   * audience its purchase puts it in (all-in-one, on Kafka and Redis, with the audience in force),
   * under the load of `clickRate` (issue 17: a click that changes membership shows within a second).
   */
  enteredP99: { op: '<', value: 1000, unit: 'ms' },
  /**
   * Collapse: the raw Kafka bytes (key + value) of the records that built a dialogue divided by
   * the durable Redis bytes (MEMORY USAGE) the dialogue is kept in.
   */
  collapse: { op: '>=', value: 50, unit: 'x' },
  /** Snippet size: dist/t.js, the tracker every page loads, compressed with gzip -9, in bytes. */
  snippetGzip: { op: '<=', value: 2048, unit: 'B' },
  /**
   * Query at scale: p99 of a page of the needs list (the first, and the one 10,000 deep by cursor)
   * with 1,000,000 people on one topic, through the query API, on Redis and on the in-memory store.
   */
  queryPageP99: { op: '<', value: 50, unit: 'ms' },
} as const satisfies Record<string, Target>;

/**
 * The load under which `clickP99` must hold, in events per second (the default of --click-rate:
 * 500 requests of 10 events per second).
 */
export const CLICK_RATE_EVENTS_PER_SECOND = 5000;

/** Whether a figure meets a target. */
export function meets(t: Target, x: number): boolean {
  return t.op === '>=' ? x >= t.value : t.op === '<=' ? x <= t.value : x < t.value;
}

/** The target as the table prints it, e.g. `>= 30,000` (digits grouped from five digits on). */
export function targetText(t: Target, prefix = ''): string {
  return `${prefix}${t.op} ${t.value >= 10_000 ? t.value.toLocaleString('en-US') : t.value}`;
}
