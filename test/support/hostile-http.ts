import type { ServerType } from '@hono/node-server';
import { expect } from 'vitest';
import { TOPICS } from '../../contract/raw-event.js';
import { createIngestApp } from '../../ingest/app.js';
import { createIngestMetrics, type IngestMetrics } from '../../ingest/metrics.js';
import { compileSites, SitesFile } from '../../ingest/sites.js';
import { createKafka, ensureTopics } from '../../lib/kafka/client.js';
import { KafkaLogProducer } from '../../lib/kafka/producer.js';
import { createLogger } from '../../lib/logger.js';
import { clientIpResolver, closeServer, listen } from '../../lib/serve.js';
import { readToEnd } from './kafka-read.js';
import { kafkaBrokers } from './services.js';

import { collectBody, goodCollectEvent, json, KEY, MAX_BODY, ORIGIN, RUN, SITE } from './hostile-cases.js';

export * from './hostile-cases.js';

/**
 * Hostile HTTP input for ingest on the run's real Kafka: the readers of what landed on clicks.raw and
 * clicks.invalid, and three ingests (the checked one, one behind a trusted proxy, one taking a junk
 * flood) that test/int/hostile-*.int.test.ts run against. The generated cases: hostile-cases.ts.
 */
export interface Consumed {
  raw: Map<string, number>;
  /** The last record of each id on clicks.raw (person, user, ip...). */
  records: Map<string, Record<string, unknown>>;
  campaigns: Map<string, number>;
  dead: Map<string, [number, string][]>;
  /** Every dead letter of the read, as written. */
  letters: string[];
}

/**
 * Reads clicks.raw and clicks.invalid from the beginning up to their current ends; keeps the
 * records of `sites` and the dead letters whose request id starts with `ridPrefix`.
 */
export async function readBack(sites: ReadonlySet<string> = new Set([SITE]), ridPrefix = `h${RUN}-`): Promise<Consumed> {
  const out: Consumed = { raw: new Map(), records: new Map(), campaigns: new Map(), dead: new Map(), letters: [] };
  await readToEnd([TOPICS.raw, TOPICS.invalid], (topic, _partition, message) => {
    const text = message.value!.toString();
    const v = JSON.parse(text) as Record<string, unknown>;
    if (topic === TOPICS.raw && sites.has(v.site as string)) {
      out.raw.set(v.id as string, (out.raw.get(v.id as string) ?? 0) + 1);
      out.records.set(v.id as string, v);
      const campaign = (v.props as Record<string, unknown> | undefined)?.campaign;
      if (v.channel === 'email' && typeof campaign === 'string') out.campaigns.set(campaign, (out.campaigns.get(campaign) ?? 0) + 1);
    }
    if (topic === TOPICS.invalid && typeof v.rid === 'string' && v.rid.startsWith(ridPrefix)) {
      const list = out.dead.get(v.rid) ?? [];
      list.push([typeof v.index === 'number' ? v.index : -1, v.reason as string]);
      out.dead.set(v.rid, list);
      out.letters.push(text);
    }
  });
  return out;
}

/** Sum of a counter's samples, optionally only those whose labels contain `labels`. */
export async function counter(metrics: IngestMetrics, name: string, labels = ''): Promise<number> {
  const text = await metrics.registry.metrics();
  return [...text.matchAll(new RegExp(`^${name}(\\{[^}]*\\})? (\\d+)$`, 'gm'))]
    .filter((m) => (m[1] ?? '').includes(labels))
    .reduce((sum, m) => sum + Number(m[2]), 0);
}

/**
 * Dead letters are written without the answer waiting for them. The producer is FIFO (one
 * produce request at a time, in order), so once this real event is acknowledged, every dead letter
 * queued before it is too, and a read-back sees them all.
 */
export async function barrier(base: string): Promise<void> {
  const res = await fetch(`${base}/v1/collect`, { method: 'POST', headers: json, body: JSON.stringify(collectBody([goodCollectEvent()])) });
  expect(res.status).toBe(202);
}

export const quantile = (xs: number[], q: number) => Math.round([...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))] ?? 0);

/** Runs `send` for each item with `concurrency` at a time; returns the answers' statuses (0: no answer). */
export async function drive<T>(items: T[], concurrency: number, send: (item: T, i: number) => Promise<Response>): Promise<number[]> {
  const statuses = new Array<number>(items.length).fill(0);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        const res = await send(items[i]!, i);
        statuses[i] = res.status;
        await res.arrayBuffer();
      } catch {
        statuses[i] = 0;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return statuses;
}

/** A site that signs user ids, next to SITE on the same ingest. */
export const SIGNED = `${SITE}-signed`;
export const SIGNED_KEY = `wk_signed_${RUN}`;
export const IDENTITY_SECRET = `identity-${RUN}-0123456789`;
/** A site behind one trusted proxy (this test), with a small per-address limit and no refill to speak of. */
export const PROXIED = `${SITE}-proxied`;
/** Dead letters per second of the ingest that takes the junk flood. */
export const FLOOD_RATE = 50;

/** The three ingests of the hostile suites, on free ports, with their Kafka producer. */
export async function startHostileIngests() {
  const metrics = createIngestMetrics();
  const proxied = { url: '', server: undefined as ServerType | undefined };
  const flood = { url: '', server: undefined as ServerType | undefined, metrics: createIngestMetrics() };
  const logger = createLogger('hostile', 'silent');
  const kafka = createKafka(kafkaBrokers(), `hostile-${RUN}`, logger);
  await ensureTopics(kafka, 3, 1);
  const producer = new KafkaLogProducer(kafka, { ackTimeoutMs: 10_000 });
  await producer.connect();
  const sites = compileSites(
    SitesFile.parse({
      sites: [
        { id: SITE, origins: [ORIGIN], writeKeys: [KEY], bots: 'flag' },
        { id: SIGNED, origins: [ORIGIN], writeKeys: [SIGNED_KEY], identitySecret: IDENTITY_SECRET },
        { id: PROXIED, origins: [ORIGIN], limits: { address: { perSecond: 0.001, burst: 3 } } },
      ],
    }),
  );
  const common = { producer, logger, maxBodyBytes: MAX_BODY, retryAfterSeconds: 1, sites };
  // This ingest is checked for every refusal's dead letter, so it lets them all through; the
  // bounded path (the default) has its own flood test below, on an ingest of its own.
  const app = createIngestApp({ ...common, metrics, clientIp: clientIpResolver(0), linkSecret: `secret-${RUN}-0123456789`, deadLettersPerSecond: 1_000_000 });
  const { server, port } = await listen(app, 0, '127.0.0.1');
  const url = `http://127.0.0.1:${port}`;
  const behindProxy = await listen(createIngestApp({ ...common, clientIp: clientIpResolver(1) }), 0, '127.0.0.1');
  Object.assign(proxied, { server: behindProxy.server, url: `http://127.0.0.1:${behindProxy.port}` });
  const flooded = await listen(
    createIngestApp({ ...common, metrics: flood.metrics, clientIp: clientIpResolver(0), deadLettersPerSecond: FLOOD_RATE }),
    0,
    '127.0.0.1',
  );
  Object.assign(flood, { server: flooded.server, url: `http://127.0.0.1:${flooded.port}` });
  return {
    server,
    port,
    url,
    producer,
    metrics,
    proxied,
    flood,
    stop: async () => {
      for (const s of [server, proxied.server, flood.server]) if (s) await closeServer(s);
      await producer?.close();
    },
  };
}
