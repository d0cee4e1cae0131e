import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BatchControl, ConsumedBatch, ConsumerOptions, Log, LogConsumer } from '../../lib/log.js';
import { eventually } from './app.js';

/**
 * The log port's contract: every Log adapter (the in-process log, Kafka) must pass the same suite.
 * `make` returns a log and a topic nobody else writes to, for each test.
 */
export interface LogUnderTest {
  log: Log;
  topic: string;
  /** A second topic nobody else writes to: where handlers publish with their commit. */
  out: string;
  /** Closes what `make` opened besides the log. */
  cleanup?(): Promise<void>;
}

const KEY = 'k';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * `consumer`: options every member of the suite gets (the Kafka suite runs once more with
 * `transactional: true`).
 */
export function logContract(
  name: string,
  make: () => Promise<LogUnderTest>,
  { waitMs = 10_000, consumer: memberDefaults = {} }: { waitMs?: number; consumer?: Partial<ConsumerOptions> } = {},
) {
  describe(`Log contract: ${name}`, () => {
    let log: Log;
    let topic: string;
    let out: string;
    let cleanup: (() => Promise<void>) | undefined;
    const running: LogConsumer[] = [];

    beforeEach(async () => {
      ({ log, topic, out, cleanup } = await make());
    });
    afterEach(async () => {
      await Promise.allSettled(running.splice(0).map((c) => c.stop()));
      await log.close();
      await cleanup?.();
    });

    /** Appends values, all under one key: one partition, in order. */
    const send = (...values: string[]) =>
      log.producer().send(
        topic,
        values.map((value) => ({ key: KEY, value })),
      );
    const group = () => `contract-${randomUUID().slice(0, 8)}`;

    /** Runs a member; `seen` collects the values of every batch its handler was given, `done` those it got through. */
    async function member(
      opts: Omit<ConsumerOptions, 'topic'>,
      handle: (batch: ConsumedBatch, ctl: BatchControl, attempt: number) => Promise<void> = async () => {},
    ) {
      const seen: ConsumedBatch[] = [];
      const done: string[] = [];
      const consumer = log.consumer({ topic, retry: { initialMs: 10, maxMs: 40 }, ...memberDefaults, ...opts });
      running.push(consumer);
      await consumer.run(async (batch, ctl) => {
        seen.push(batch);
        await handle(batch, ctl, seen.length);
        done.push(...batch.messages.map((m) => m.value));
      });
      const stop = async () => {
        running.splice(running.indexOf(consumer), 1);
        await consumer.stop();
      };
      return { consumer, seen, done, stop };
    }

    /** Waits until `values` ends with `last`, then a little more (anything extra would show), and answers what came. */
    async function until(values: string[], last: string): Promise<string[]> {
      await eventually(async () => (values.includes(last) ? true : undefined), waitMs, `"${last}"`);
      await sleep(200);
      return [...values];
    }

    it('answers the offsets at the beginning, at the end and at a time', async () => {
      await send('a', 'b');
      await sleep(15);
      const t = Date.now();
      await sleep(15);
      await send('c');
      const [beginning, end, at, later] = await Promise.all([
        log.offsets(topic, 'beginning'),
        log.offsets(topic, 'end'),
        log.offsets(topic, { timestamp: t }),
        log.offsets(topic, { timestamp: Date.now() + 60_000 }),
      ]);
      const total = (m: Map<number, string>) => [...m.values()].reduce((n, o) => n + Number(o), 0);
      expect(total(beginning)).toBe(0);
      expect(total(end)).toBe(3);
      // The partition of KEY: c is at offset 2; the others are empty (their end, 0).
      expect(total(at)).toBe(2);
      expect(later).toEqual(end);
    });

    it('a group resumes where it committed', async () => {
      const g = group();
      await send('1', '2', '3');
      const first = await member({ group: g });
      expect(await until(first.done, '3')).toEqual(['1', '2', '3']);
      await first.stop();
      await send('4', '5');
      const second = await member({ group: g });
      expect(await until(second.done, '5')).toEqual(['4', '5']);
      await eventually(async () => ([...(await second.consumer.lag!()).values()].some((n) => n > 0) ? undefined : true), waitMs, 'lag 0');
    });

    it("startAt 'end' skips what was there, a new group 'beginning' reads it all", async () => {
      await send('old-1', 'old-2');
      const fromEnd = await member({ group: group(), startAt: 'end' });
      const fromStart = await member({ group: group(), startAt: 'beginning' });
      await send('new');
      expect(await until(fromEnd.done, 'new')).toEqual(['new']);
      expect(await until(fromStart.done, 'new')).toEqual(['old-1', 'old-2', 'new']);
    });

    it('startAt a timestamp begins at the first record appended at or after it', async () => {
      await send('before-1', 'before-2');
      await sleep(15);
      const t = Date.now();
      await sleep(15);
      await send('after-1', 'after-2');
      const m = await member({ group: group(), startAt: { timestamp: t } });
      expect(await until(m.done, 'after-2')).toEqual(['after-1', 'after-2']);
    });

    it('an ephemeral group is gone after stop: the same name starts afresh', async () => {
      const g = group();
      await send('x', 'y');
      const ephemeral = await member({ group: g, ephemeral: true });
      expect(await until(ephemeral.done, 'y')).toEqual(['x', 'y']);
      await ephemeral.stop();
      const again = await member({ group: g });
      expect(await until(again.done, 'y')).toEqual(['x', 'y']);
    });

    it('a handler that throws gets the same batch again; nothing is committed past it', async () => {
      const g = group();
      await send('a', 'b', 'c');
      const failing = await member({ group: g }, async () => {
        throw new Error('Redis is away');
      });
      await eventually(async () => (failing.seen.length >= 3 ? true : undefined), waitMs, 'three attempts');
      expect(new Set(failing.seen.map((b) => b.messages[0]!.offset)).size).toBe(1);
      expect(failing.consumer.health!()).toMatchObject({ failing: true, lastError: 'Redis is away' });
      await failing.stop();
      // Nothing was committed: the group's next member starts with the same records.
      const recovering = await member({ group: g }, async (_b, _ctl, attempt) => {
        if (attempt <= 2) throw new Error('still away');
      });
      expect(await until(recovering.done, 'c')).toEqual(['a', 'b', 'c']);
      expect(recovering.seen[0]!.messages[0]!.value).toBe('a');
      expect(new Set(recovering.seen.slice(0, 3).map((b) => b.messages[0]!.offset)).size).toBe(1);
      await eventually(async () => (recovering.consumer.health!().failing ? undefined : true), waitMs, 'the recovery');
    });

    it('what a handler committed itself is not handed over again after it throws', async () => {
      await send('p', 'q', 'r');
      const m = await member({ group: group() }, async (batch, ctl, attempt) => {
        if (attempt === 1 && batch.messages.length > 1) {
          await ctl.commit(batch.messages[0]!.offset);
          throw new Error('failed after the first record');
        }
      });
      expect(await until(m.done, 'r')).toEqual(m.seen[0]!.messages.length > 1 ? ['q', 'r'] : ['p', 'q', 'r']);
      if (m.seen[0]!.messages.length > 1) expect(m.seen[1]!.messages[0]!.value).toBe('q');
    });

    it('a batch whose handler gives up on stop stays uncommitted; with commitOnStop it is committed', async () => {
      const g = group();
      const gc = group();
      await send('w');
      const waitForStop = async (_b: ConsumedBatch, ctl: BatchControl) => {
        while (!ctl.stopped()) await sleep(5);
      };
      const giving = await member({ group: g }, waitForStop);
      const finishing = await member({ group: gc, commitOnStop: true }, waitForStop);
      await eventually(async () => (giving.seen.length > 0 && finishing.seen.length > 0 ? true : undefined), waitMs, 'both handlers');
      await Promise.all([giving.stop(), finishing.stop()]);
      await send('z');
      const afterGiving = await member({ group: g });
      const afterFinishing = await member({ group: gc });
      expect(await until(afterGiving.done, 'z')).toEqual(['w', 'z']);
      expect(await until(afterFinishing.done, 'z')).toEqual(['z']);
    });

    /** Everything on `out` so far, read by a group of its own from the beginning (read_committed on Kafka). */
    async function published(last: string): Promise<string[]> {
      // Made by hand: the suite's members read `topic`.
      const values: string[] = [];
      const c = log.consumer({ topic: out, group: group(), ephemeral: true });
      running.push(c);
      await c.run(async (batch) => {
        values.push(...batch.messages.map((m) => m.value));
      });
      const seen = await until(values, last);
      running.splice(running.indexOf(c), 1);
      await c.stop();
      return seen;
    }

    it('publishAndCommit writes the records and commits the batch as one step', async () => {
      const g = group();
      await send('m1', 'm2', 'm3');
      const first = await member({ group: g }, async (batch, ctl) => {
        const last = batch.messages.at(-1)!.offset;
        await ctl.publishAndCommit([{ topic: out, messages: batch.messages.map((m) => ({ key: KEY, value: `out-${m.value}` })) }], last);
      });
      expect(await until(first.done, 'm3')).toEqual(['m1', 'm2', 'm3']);
      await first.stop();
      expect(await published('out-m3')).toEqual(['out-m1', 'out-m2', 'out-m3']);
      // Committed with the records: the group's next member starts after them.
      await send('m4');
      const second = await member({ group: g });
      expect(await until(second.done, 'm4')).toEqual(['m4']);
    });

    it('publishAndCommit with nothing to publish still commits', async () => {
      const g = group();
      await send('e1');
      const first = await member({ group: g }, async (batch, ctl) => ctl.publishAndCommit([{ topic: out, messages: [] }], batch.messages.at(-1)!.offset));
      await until(first.done, 'e1');
      await first.stop();
      await send('e2');
      const second = await member({ group: g });
      expect(await until(second.done, 'e2')).toEqual(['e2']);
    });
  });
}
