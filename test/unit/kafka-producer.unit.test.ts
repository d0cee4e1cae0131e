import type { Kafka, ProducerBatch } from 'kafkajs';
import { Partitioners } from 'kafkajs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { compatibilityPartitioner } from '@platformatic/kafka';
import { memoized } from '../../lib/kafka/producer-platformatic.js';
import { isFatalIdempotenceError, KafkaLogProducer, memoizedDefaultPartitioner, type ProduceWire } from '../../lib/kafka/producer.js';
import { LogUnavailableError } from '../../lib/log.js';

/** A kafkajs producer stand-in: each sendBatch waits until the test acknowledges or fails it. */
function fakeKafka() {
  const requests: { batch: ProducerBatch; ack: () => void; fail: (e: Error) => void }[] = [];
  const producer = {
    events: { CONNECT: 'connect', DISCONNECT: 'disconnect' },
    on: () => {},
    connect: async () => {},
    disconnect: vi.fn(async () => {}),
    sendBatch: (batch: ProducerBatch) =>
      new Promise((resolve, reject) => {
        requests.push({ batch, ack: () => resolve([]), fail: reject });
      }),
  };
  const kafka = { producer: () => producer } as unknown as Kafka;
  return { kafka, producer, requests };
}

const msgs = (key: string, n: number) => Array.from({ length: n }, (_, i) => ({ key, value: `${key}-${i}` }));
/** A few turns of the event loop: enough for an acknowledgement to settle and the next request to leave. */
const turn = async () => {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
};

afterEach(() => {
  vi.useRealTimers();
});

describe('KafkaLogProducer (micro-batching)', () => {
  it('replaces the kafkajs producer (a new producer id) after a fatal idempotence error, and sends again', async () => {
    const made: { sendBatch: ReturnType<typeof vi.fn>; connect: ReturnType<typeof vi.fn>; disconnect: ReturnType<typeof vi.fn> }[] = [];
    const kafka = {
      producer: () => {
        const n = made.length;
        const producer = {
          events: { CONNECT: 'connect', DISCONNECT: 'disconnect' },
          on: () => {},
          connect: vi.fn(async () => {}),
          disconnect: vi.fn(async () => {}),
          // The first producer's id is out of step with the broker: every request fails, as after a broker restart.
          sendBatch: vi.fn(async () => {
            if (n === 0)
              throw Object.assign(new Error('retries exceeded'), {
                cause: Object.assign(new Error('The broker received an out of order sequence number'), { type: 'OUT_OF_ORDER_SEQUENCE_NUMBER' }),
              });
            return [];
          }),
        };
        made.push(producer);
        return producer;
      },
    } as unknown as Kafka;
    const p = new KafkaLogProducer(kafka, { ackTimeoutMs: 60_000 });
    await p.connect();
    await expect(p.send('clicks.raw', msgs('a', 1))).rejects.toBeInstanceOf(LogUnavailableError);
    await expect(p.send('clicks.raw', msgs('b', 1))).resolves.toBeUndefined();
    expect(made).toHaveLength(2);
    expect(made[0]!.disconnect).toHaveBeenCalled();
    expect(made[1]!.connect).toHaveBeenCalled();
    expect(made[1]!.sendBatch).toHaveBeenCalledTimes(1);
    expect(p.stats().replaced).toBe(1);
  });

  it('does not replace the producer for an ordinary failure (the broker away)', async () => {
    const { kafka, requests } = fakeKafka();
    const spy = vi.spyOn(kafka, 'producer');
    const p = new KafkaLogProducer(kafka, { ackTimeoutMs: 60_000 });
    const sent = p.send('clicks.raw', msgs('a', 1));
    await turn();
    requests[0]!.fail(Object.assign(new Error('Connection error'), { type: 'NETWORK_EXCEPTION' }));
    await expect(sent).rejects.toBeInstanceOf(LogUnavailableError);
    expect(spy).toHaveBeenCalledTimes(1);
    expect(p.stats().replaced).toBe(0);
  });

  it('splits one send larger than a produce request into several, in order, and resolves once all are acknowledged', async () => {
    const { kafka, requests } = fakeKafka();
    // Each message is 1 + 7 bytes (key + value): three fit in 24 bytes, the fourth opens a new request.
    const p = new KafkaLogProducer(kafka, { ackTimeoutMs: 60_000, maxBatchBytes: 24 });
    const big = Array.from({ length: 7 }, (_, i) => ({ key: 'k', value: `value-${i}` }));
    let resolved = false;
    const sent = p.send('clicks.invalid', big).then(() => (resolved = true));
    const seen: string[][] = [];
    for (let i = 0; i < 3; i++) {
      await turn();
      expect(requests).toHaveLength(i + 1);
      seen.push(requests[i]!.batch.topicMessages!.flatMap((t) => t.messages.map((m) => String(m.value))));
      expect(resolved).toBe(false);
      requests[i]!.ack();
    }
    await sent;
    expect(seen).toEqual([['value-0', 'value-1', 'value-2'], ['value-3', 'value-4', 'value-5'], ['value-6']]);
  });

  it('sends concurrent sends together, one request at a time, and resolves each on its request’s acknowledgement', async () => {
    const { kafka, requests } = fakeKafka();
    const p = new KafkaLogProducer(kafka, { ackTimeoutMs: 60_000 });
    const done: string[] = [];
    const a = p.send('clicks.raw', msgs('a', 2)).then(() => done.push('a'));
    const b = p.send('clicks.invalid', msgs('b', 1)).then(() => done.push('b'));
    await turn();
    expect(requests).toHaveLength(1);
    expect(requests[0]!.batch.acks).toBe(-1);
    expect(requests[0]!.batch.topicMessages).toEqual([
      { topic: 'clicks.raw', messages: msgs('a', 2) },
      { topic: 'clicks.invalid', messages: msgs('b', 1) },
    ]);

    // While it is in flight, later sends wait and then leave together, in order.
    const c = p.send('clicks.raw', msgs('c', 1)).then(() => done.push('c'));
    const d = p.send('clicks.raw', msgs('d', 1)).then(() => done.push('d'));
    await turn();
    expect(requests).toHaveLength(1);
    requests[0]!.ack();
    await Promise.all([a, b]);
    await turn();
    expect(requests).toHaveLength(2);
    expect(requests[1]!.batch.topicMessages).toEqual([{ topic: 'clicks.raw', messages: [...msgs('c', 1), ...msgs('d', 1)] }]);
    expect(done).toEqual(['a', 'b']);
    requests[1]!.ack();
    await Promise.all([c, d]);
    expect(done).toEqual(['a', 'b', 'c', 'd']);
    expect(p.stats()).toMatchObject({ requests: 2, messages: 5, sends: 4 });
  });

  it('rejects every caller of a failed request with LogUnavailableError, and goes on with the next', async () => {
    const { kafka, requests } = fakeKafka();
    const p = new KafkaLogProducer(kafka, { ackTimeoutMs: 60_000 });
    const a = p.send('t', msgs('a', 1));
    const b = p.send('t', msgs('b', 1));
    await turn();
    const c = p.send('t', msgs('c', 1));
    requests[0]!.fail(new Error('NOT_LEADER_FOR_PARTITION'));
    await expect(a).rejects.toBeInstanceOf(LogUnavailableError);
    await expect(b).rejects.toThrow(/NOT_LEADER_FOR_PARTITION/);
    await turn();
    expect(requests).toHaveLength(2);
    requests[1]!.ack();
    await expect(c).resolves.toBeUndefined();
  });

  it('times a send out with LogUnavailableError; one still queued is taken out and never sent', async () => {
    vi.useFakeTimers();
    const { kafka, requests } = fakeKafka();
    const p = new KafkaLogProducer(kafka, { ackTimeoutMs: 1000 });
    const stuck = p.send('t', msgs('stuck', 1));
    await vi.advanceTimersToNextTimerAsync(); // the setImmediate that sends it
    expect(requests).toHaveLength(1);
    const queued = p.send('t', msgs('queued', 1));
    const stuckResult = expect(stuck).rejects.toThrow(/no acknowledgement from Kafka within 1000 ms/);
    const queuedResult = expect(queued).rejects.toBeInstanceOf(LogUnavailableError);
    await vi.advanceTimersByTimeAsync(1000);
    await stuckResult;
    await queuedResult;
    // The stuck request finally fails; the timed-out queued send is not sent after it.
    requests[0]!.fail(new Error('request timed out'));
    await vi.advanceTimersByTimeAsync(10);
    expect(requests).toHaveLength(1);
    expect(p.stats().timedOut).toBe(2);
  });

  it('refuses at once when too many messages are waiting, instead of queueing without bound', async () => {
    const { kafka, requests } = fakeKafka();
    const p = new KafkaLogProducer(kafka, { ackTimeoutMs: 60_000, maxQueuedMessages: 10 });
    const first = p.send('t', msgs('a', 4));
    await turn();
    const waiting = p.send('t', msgs('b', 8));
    await expect(p.send('t', msgs('c', 3))).rejects.toBeInstanceOf(LogUnavailableError);
    requests[0]!.ack();
    await first;
    await turn();
    requests[1]!.ack();
    await waiting;
  });

  it('splits what waits into requests under the byte cap, keeping each send whole and in order', async () => {
    const { kafka, requests } = fakeKafka();
    const p = new KafkaLogProducer(kafka, { ackTimeoutMs: 60_000, maxBatchBytes: 30 });
    const first = p.send('t', msgs('x', 1));
    await turn();
    // A message is 4 bytes of key+value ("p" + "p-0"), a send of two 8: three sends fit in 30, not four.
    const sends = ['p', 'q', 'r', 's'].map((k) => p.send('t', msgs(k, 2)));
    requests[0]!.ack();
    await first;
    await turn();
    expect(requests[1]!.batch.topicMessages![0]!.messages.map((m) => m.key)).toEqual(['p', 'p', 'q', 'q', 'r', 'r']);
    requests[1]!.ack();
    await turn();
    expect(requests[2]!.batch.topicMessages![0]!.messages.map((m) => m.key)).toEqual(['s', 's']);
    requests[2]!.ack();
    await Promise.all(sends);
  });

  it('close() lets what is queued go out before disconnecting', async () => {
    const { kafka, producer, requests } = fakeKafka();
    const p = new KafkaLogProducer(kafka, { ackTimeoutMs: 60_000 });
    const a = p.send('t', msgs('a', 1));
    await turn();
    const b = p.send('t', msgs('b', 1));
    const closed = p.close();
    requests[0]!.ack();
    await a;
    await turn();
    expect(producer.disconnect).not.toHaveBeenCalled();
    requests[1]!.ack();
    await b;
    await closed;
    expect(producer.disconnect).toHaveBeenCalledOnce();
  });
});

describe('memoizedDefaultPartitioner', () => {
  it('puts every key where kafkajs’s DefaultPartitioner (Java murmur2) puts it', () => {
    for (const n of [1, 3, 6, 12]) {
      const partitionMetadata = Array.from({ length: n }, (_, partitionId) => ({ partitionId, leader: 1, replicas: [1], isr: [1], partitionErrorCode: 0 }));
      const plain = Partitioners.DefaultPartitioner();
      const memo = memoizedDefaultPartitioner();
      for (let i = 0; i < 2000; i++) {
        const key = i % 2 ? `v-${i * 7919}` : `26184214286908871261509675${i}`;
        const args = { topic: 'clicks.raw', partitionMetadata, message: { key, value: 'x' } };
        const expected = plain(args);
        expect(memo(args)).toBe(expected);
        expect(memo(args)).toBe(expected);
      }
    }
  });
});

describe('@platformatic/kafka compatibilityPartitioner (KAFKA_PRODUCER=platformatic)', () => {
  it('puts every key on the partition kafkajs’s DefaultPartitioner (Java murmur2) puts it', () => {
    for (const n of [1, 3, 6, 12]) {
      const partitionMetadata = Array.from({ length: n }, (_, partitionId) => ({ partitionId, leader: 1, replicas: [1], isr: [1], partitionErrorCode: 0 }));
      const plain = Partitioners.DefaultPartitioner();
      const memo = memoized(compatibilityPartitioner);
      for (let i = 0; i < 2000; i++) {
        const key = i % 2 ? `v-${i * 7919}` : `26184214286908871261509675${i}`;
        const expected = plain({ topic: 'clicks.raw', partitionMetadata, message: { key, value: 'x' } });
        // The library takes the result modulo the partition count (producer.js #performSend).
        expect(compatibilityPartitioner({ topic: 'clicks.raw', key: Buffer.from(key) }, Buffer.from(key)) % n).toBe(expected);
        // What the platformatic wire uses: the same answers, remembered by key.
        expect(memo({ topic: 'clicks.raw', key }, Buffer.from(key)) % n).toBe(expected);
        expect(memo({ topic: 'clicks.raw', key }, Buffer.from(key)) % n).toBe(expected);
      }
    }
  });
});

describe('isFatalIdempotenceError', () => {
  it('knows the fatal errors as kafkajs and @platformatic/kafka report them, wrapped or aggregated', () => {
    expect(isFatalIdempotenceError({ type: 'OUT_OF_ORDER_SEQUENCE_NUMBER' })).toBe(true);
    expect(isFatalIdempotenceError({ cause: { originalError: { type: 'UNKNOWN_PRODUCER_ID' } } })).toBe(true);
    expect(isFatalIdempotenceError({ apiId: 'INVALID_PRODUCER_EPOCH' })).toBe(true);
    expect(isFatalIdempotenceError({ errors: [{ apiId: 'NOT_LEADER_OR_FOLLOWER' }, { errors: [{ apiId: 'OUT_OF_ORDER_SEQUENCE_NUMBER' }] }] })).toBe(true);
    expect(isFatalIdempotenceError({ apiId: 'NOT_LEADER_OR_FOLLOWER', errors: [{ type: 'REQUEST_TIMED_OUT' }] })).toBe(false);
    expect(isFatalIdempotenceError(new Error('socket hang up'))).toBe(false);
  });
});

describe('KafkaLogProducer on a wire of its own', () => {
  it('sends through the wire, and takes a new one (a new producer id) after a platformatic request failed', async () => {
    const wires: { sent: string[][]; fail: boolean; closed: boolean }[] = [];
    const factory = (): ProduceWire => {
      const w = { sent: [] as string[][], fail: wires.length === 0, closed: false };
      wires.push(w);
      return {
        connect: async () => {},
        disconnect: async () => {
          w.closed = true;
        },
        onConnected: () => {},
        send: async (topicMessages) => {
          if (w.fail) throw new Error('request timed out');
          w.sent.push(topicMessages.flatMap((t) => t.messages.map((m) => m.value)));
        },
      };
    };
    const p = new KafkaLogProducer({} as Kafka, { ackTimeoutMs: 60_000, client: 'platformatic', wire: factory });
    await p.connect();
    await expect(p.send('clicks.raw', msgs('a', 2))).rejects.toBeInstanceOf(LogUnavailableError);
    await turn();
    await p.send('clicks.raw', msgs('b', 2));
    expect(wires).toHaveLength(2);
    expect(wires[0]!.closed).toBe(true);
    expect(wires[1]!.sent).toEqual([['b-0', 'b-1']]);
    expect(p.stats().replaced).toBe(1);
    await p.close();
  });
});

describe('KAFKA_PRODUCER (lib/config.ts)', () => {
  it('is platformatic unless it says kafkajs; anything else is refused with the choices', async () => {
    const { parseEnv } = await import('../../lib/config.js');
    expect(parseEnv({}).KAFKA_PRODUCER).toBe('platformatic');
    expect(parseEnv({ KAFKA_PRODUCER: 'kafkajs' }).KAFKA_PRODUCER).toBe('kafkajs');
    expect(() => parseEnv({ KAFKA_PRODUCER: 'rdkafka' })).toThrow(/KAFKA_PRODUCER: kafkajs or platformatic \(transactions always use kafkajs\)/);
  });
});
