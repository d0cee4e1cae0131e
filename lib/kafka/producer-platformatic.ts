import type { MessageToProduce, Producer } from '@platformatic/kafka';
import type { KafkaProducerOptions, ProduceWire, WireFactory } from './producer.js';

/**
 * The library, loaded on first use: importing it compiles its option validators (ajv), about a
 * second of CPU at start that every process paid (4% of a bench ingest profile) though only those
 * with KAFKA_PRODUCER=platformatic use it.
 */
let library: Promise<typeof import('@platformatic/kafka')> | undefined;
const load = () => (library ??= import('@platformatic/kafka'));

/**
 * The produce path on @platformatic/kafka 1.x (KAFKA_PRODUCER=platformatic), under the same
 * micro-batching queue as kafkajs (KafkaLogProducer). 1.x is the last line that runs on Node 20;
 * 2.x needs Node 22. Measured by the bench side by side with kafkajs: it encodes and writes a
 * produce request for a fraction of kafkajs's CPU.
 *
 * - Idempotent with acks=-1 (all in-sync replicas), one request in flight, as PRODUCER_CONFIG.
 * - `compatibilityPartitioner`: murmur2 of the key masked positive, Java's (and kafkajs's default)
 *   partitioner. The library's own default masks differently, which would move a person's
 *   records to another partition than every other client puts them in.
 * - Bounded retries: its idempotent default retries forever, which would hold the queue behind a
 *   broker that is away; the queue's ackTimeoutMs answers the callers anyway.
 * - One request at a time, always: the library numbers a request's records from the sequence last
 *   acknowledged, so two requests in flight on one producer would carry the same numbers, and the
 *   broker takes the second as a duplicate of the first when their counts match (acknowledged, not
 *   written). KafkaLogProducer sends one request at a time; the wire refuses a second one.
 * - It advances a partition's sequence numbers only on success. A request that failed on the
 *   client but was written by the broker would make the next request of the same size look like
 *   its duplicate (acknowledged, not written), so KafkaLogProducer takes a new producer id after
 *   any failed request of this client.
 */
/**
 * The partitioner's answers by key: the ten events of a request share one key, and the murmur2
 * of it was 1.6% of ingest's CPU (bench profile). The answer is the hash itself (the library takes
 * it modulo the partition count), so it depends on the key alone.
 */
type KeyPartitioner = (m: MessageToProduce<string, string, string, string>, key?: Buffer) => number;

export function memoized(partitioner: KeyPartitioner): KeyPartitioner {
  const memo = new Map<string, number>();
  return (m, key) => {
    if (typeof m.key !== 'string') return partitioner(m, key);
    let hash = memo.get(m.key);
    if (hash === undefined) {
      hash = partitioner(m, key);
      if (memo.size >= 100_000) memo.clear();
      memo.set(m.key, hash);
    }
    return hash;
  };
}

export function platformaticWire(opts: Pick<KafkaProducerOptions, 'brokers' | 'clientId' | 'ackTimeoutMs'>): WireFactory {
  const brokers = (opts.brokers ?? '')
    .split(',')
    .map((b) => b.trim())
    .filter(Boolean);
  if (brokers.length === 0) throw new Error('the platformatic producer needs the brokers (KAFKA_BROKERS)');
  return () => {
    let producer: Producer<string, string, string, string> | undefined;
    let lib: typeof import('@platformatic/kafka') | undefined;
    const listeners: ((connected: boolean) => void)[] = [];
    let connected = false;
    let sending = false;
    const tell = (up: boolean) => {
      connected = up;
      for (const l of listeners) l(up);
    };
    const wire: ProduceWire = {
      async connect() {
        lib ??= await load();
        producer ??= new lib.Producer({
          clientId: opts.clientId ?? 'clickfold',
          bootstrapBrokers: brokers,
          idempotent: true,
          acks: lib.ProduceAcks.ALL,
          partitioner: memoized(lib.compatibilityPartitioner<string, string, string, string>),
          serializers: lib.stringSerializers,
          timeout: opts.ackTimeoutMs,
          requestTimeout: opts.ackTimeoutMs,
          retries: 3,
          retryDelay: 100,
          autocreateTopics: false,
        });
        // The library connects on its first request; ask for the cluster's metadata so that a
        // broker that is away shows at start, as kafkajs's connect() does.
        await producer.metadata({ topics: [] });
        tell(true);
      },
      async send(topicMessages) {
        if (!producer || !lib) throw new Error('the platformatic producer is not connected');
        if (sending) throw new Error('the platformatic producer takes one request at a time');
        const { NetworkError, TimeoutError } = lib;
        const messages = [];
        for (const t of topicMessages) for (const m of t.messages) messages.push({ topic: t.topic, key: m.key, value: m.value });
        sending = true;
        try {
          await producer.send({ messages });
          if (!connected) tell(true);
        } catch (err) {
          if (err instanceof NetworkError || err instanceof TimeoutError || (err as { errors?: unknown[] }).errors?.some((e) => e instanceof NetworkError))
            tell(false);
          throw err;
        } finally {
          sending = false;
        }
      },
      async disconnect() {
        tell(false);
        await producer?.close();
      },
      onConnected(listener) {
        listeners.push(listener);
      },
    };
    return wire;
  };
}
