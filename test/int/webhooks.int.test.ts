import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeadLetter } from '../../contract/dead-letter.js';
import { TOPICS } from '../../contract/raw-event.js';
import type { AudienceEvent, HistoryEvent, StallEvent, Transition } from '../../contract/transition.js';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import { SIGNATURE_HEADER, verifyWebhook } from '../../history/transitions/webhook-signature.js';
import { batch, eventually, post, startTestApp, type Mode } from '../support/app.js';
import { readTopic } from '../support/kafka-read.js';

/**
 * Webhooks end to end: the whole app (ingest, worker, webhook consumer) posts transitions to a
 * receiver in this test. The receiver is up, then down (connection refused), then answers 503 for
 * a while, then up again. Every transition must arrive accepted exactly once, each request signed.
 * A second receiver (a URL of its own) refuses one request for good (422): that request is parked
 * on history.webhooks.parked, and later transitions still reach it. A third receiver opts into
 * stalls alone (`#kinds=stalled`): it gets the stall and nothing else, while the other two (kinds by
 * default) get stage transitions alone, also with a malformed record on the log among them.
 */
const SECRET = 'test-webhook-secret-0123456789';

interface Received {
  transitions: HistoryEvent[];
  delivery: string;
  accepted: boolean;
}

class Receiver {
  readonly requests: Received[] = [];
  readonly badSignatures: string[] = [];
  /** Answer 503 to this many more requests that carry transitions of this run's people. */
  failNext = 0;
  /** Answer `status` with `body` to this many more requests that carry transitions of people starting with `prefix`. */
  refuse: { prefix: string; count: number; status: number; body: string } | null = null;

  constructor(private readonly run: string) {}

  private server: Server | null = null;
  port = 0;

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (body += d));
      req.on('end', () => {
        const check = verifyWebhook(SECRET, req.headers[SIGNATURE_HEADER] as string | undefined, body);
        if (!check.ok) this.badSignatures.push(check.reason);
        const parsed = JSON.parse(body) as { transitions: HistoryEvent[] };
        // Other test files share history.transitions on the real stack: fail only this run's requests.
        const ours = parsed.transitions.some((t) => t.person.startsWith(this.run));
        const refuse = this.refuse && this.refuse.count > 0 && parsed.transitions.some((t) => t.person.startsWith(this.refuse!.prefix)) ? this.refuse : null;
        const accepted = check.ok && !(ours && this.failNext > 0) && !refuse;
        if (ours && this.failNext > 0) this.failNext--;
        this.requests.push({ transitions: parsed.transitions, delivery: String(req.headers['x-clickfold-delivery']), accepted });
        if (refuse) {
          refuse.count--;
          res.writeHead(refuse.status, { 'content-type': 'application/json' }).end(refuse.body);
        } else res.writeHead(accepted ? 204 : 503).end();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** Stage transitions of `prefix`'s people that the receiver accepted (answered 2xx). */
  accepted(prefix: string): Transition[] {
    return this.acceptedEvents(prefix).filter((e): e is Transition => !('kind' in e));
  }
  /** Events of every kind of `prefix`'s people that the receiver accepted. */
  acceptedEvents(prefix: string): HistoryEvent[] {
    return this.requests.filter((r) => r.accepted).flatMap((r) => r.transitions.filter((t) => t.person.startsWith(prefix)));
  }
  attempts(prefix: string): number {
    return this.requests.filter((r) => r.transitions.some((t) => t.person.startsWith(prefix))).length;
  }
}

describe.each<Mode>(['real', 'embedded'])('webhooks (%s backends)', (mode) => {
  const run = `wh${randomUUID().slice(0, 8)}`;
  const receiver = new Receiver(run);
  /** A second URL, for the permanent refusal (its consumer is independent of the first's). */
  const strict = new Receiver(run);
  /** A third URL, opted into stalls alone. */
  const stalls = new Receiver(run);
  let app: RunningApp;

  beforeAll(async () => {
    await receiver.start();
    await strict.start();
    await stalls.start();
    const urls = [
      `http://127.0.0.1:${receiver.port}/hooks/clickfold`,
      `http://127.0.0.1:${strict.port}/hooks/strict`,
      `http://127.0.0.1:${stalls.port}/hooks/stalls#kinds=stalled`,
    ];
    app = await startTestApp(mode, { WEBHOOK_URLS: urls.join(','), WEBHOOK_SECRET: SECRET, WEBHOOK_RETRY_MAX_MS: '800' });
  });
  afterAll(async () => {
    await app?.stop();
    await receiver.stop();
    await strict.stop();
    await stalls.stop();
  });

  /** Every transition of the run's people on history.transitions, as the worker published them. */
  const onLog = async (count: number): Promise<Transition[]> => {
    const keep = (_k: string, v: string) => {
      const t = JSON.parse(v) as Transition;
      return t.person.startsWith(run) ? t : undefined;
    };
    if (mode !== 'embedded') return readTopic(TOPICS.transitions, keep, (f) => f.length >= count, { settleMs: 0 });
    return eventually(async () => {
      const found = app.backends
        .log!.read(TOPICS.transitions)
        .flat()
        .flatMap((m) => keep('', m.value) ?? []);
      return found.length >= count ? found : undefined;
    });
  };

  const walk = (person: string, sku: string) =>
    post(
      app.url,
      batch(person, [
        { type: 'page', url: `/products/${sku}` },
        { type: 'page', url: `/products/${sku}/specs` },
        { type: 'page', url: `/checkout/${sku}` },
      ]),
    );

  it('delivers each transition once, signed, also after the receiver was down for a while', async () => {
    // Up: two people walk to purchase (3 transitions each).
    expect((await walk(`${run}-a1`, 'sku-1')).status).toBe(202);
    expect((await walk(`${run}-a2`, 'sku-2')).status).toBe(202);
    await eventually(async () => (receiver.accepted(run).length >= 6 ? true : undefined), 30_000, 'the first deliveries');

    // Down: connections refused. Three more people walk; their history is folded all the same.
    await receiver.stop();
    for (const p of ['b1', 'b2', 'b3']) expect((await walk(`${run}-${p}`, 'sku-1')).status).toBe(202);
    await eventually(
      async () => {
        const r = await fetch(`${app.url}/v1/people/${run}-b3`);
        return r.status === 200 && ((await r.json()) as { dialogues: { stage: string }[] }).dialogues[0]?.stage === 'purchase' ? true : undefined;
      },
      20_000,
      'the fold to go on while the receiver is down',
    );
    const before = receiver.requests.length;
    await new Promise((r) => setTimeout(r, 2500));

    // Back, but failing (503) for its first requests; then healthy.
    receiver.failNext = 2;
    await receiver.start();
    const expected = await onLog(15);
    await eventually(async () => (receiver.accepted(run).length >= 15 ? true : undefined), 30_000, 'every transition delivered');
    // Settle: nothing more may come.
    await new Promise((r) => setTimeout(r, 1500));

    const accepted = receiver.accepted(run);
    const ids = accepted.map((t) => t.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.sort()).toEqual(expected.map((t) => t.id).sort());
    expect(accepted.filter((t) => t.person === `${run}-b2`).map((t) => [t.from, t.to])).toEqual([
      [null, 'intro'],
      ['intro', 'detail'],
      ['detail', 'purchase'],
    ]);
    // The 503s were retried (same delivery id), and every request carried a valid signature.
    expect(receiver.requests.length - before).toBeGreaterThanOrEqual(3);
    const rejected = receiver.requests.filter((r) => !r.accepted && r.transitions.some((t) => t.person.startsWith(run)));
    expect(rejected).toHaveLength(2);
    for (const r of rejected) expect(receiver.requests.some((q) => q.accepted && q.delivery === r.delivery)).toBe(true);
    expect(receiver.badSignatures).toEqual([]);
    expect(receiver.attempts(run)).toBeGreaterThan(receiver.requests.filter((r) => r.accepted && r.transitions.some((t) => t.person.startsWith(run))).length);
  });

  it('parks a request the receiver refuses for good (422), with the status and an excerpt of the answer, and goes on', async () => {
    const strictUrl = `http://127.0.0.1:${strict.port}/hooks/strict`;
    const excuse = JSON.stringify({ error: 'schema mismatch', detail: 'x'.repeat(5000) });
    strict.refuse = { prefix: `${run}-c1`, count: 1, status: 422, body: excuse };
    expect((await walk(`${run}-c1`, 'sku-1')).status).toBe(202);

    /** Parked records of this run's people for the strict URL. */
    const mine = (_k: string, v: string) => {
      const letter = DeadLetter.parse(JSON.parse(v));
      return letter.url === strictUrl && letter.transitions?.some((t) => t.person.startsWith(run)) ? letter : undefined;
    };
    const parked =
      mode !== 'embedded'
        ? await readTopic(TOPICS.webhooksParked, mine, (f) => f.length >= 1, { settleMs: 0 })
        : await eventually(
            async () => {
              const found = app.backends
                .log!.read(TOPICS.webhooksParked)
                .flat()
                .flatMap((m) => mine('', m.value) ?? []);
              return found.length >= 1 ? found : undefined;
            },
            30_000,
            'the parked request',
          );

    // Later transitions still reach the strict receiver.
    expect((await walk(`${run}-c2`, 'sku-2')).status).toBe(202);
    await eventually(async () => (strict.accepted(`${run}-c2`).length >= 3 ? true : undefined), 30_000, 'later transitions delivered to the strict URL');
    const c1 = (await onLog(21)).filter((t) => t.person === `${run}-c1`);
    expect(c1).toHaveLength(3);
    // Whatever of c1 was not in the refused request went out on its own, and was taken.
    await eventually(async () => (strict.accepted(`${run}-c1`).length + parked[0]!.transitions!.length >= 3 ? true : undefined), 30_000, 'the rest of c1');
    await new Promise((r) => setTimeout(r, 1000));

    // One refused request, sent once (never retried), parked once with what it carried.
    const refused = strict.requests.filter((r) => !r.accepted && r.transitions.some((t) => t.person.startsWith(run)));
    expect(refused).toHaveLength(1);
    expect(strict.requests.filter((r) => r.delivery === refused[0]!.delivery)).toHaveLength(1);
    expect(parked).toHaveLength(1);
    const letter = parked[0]!;
    expect(letter).toMatchObject({ stage: 'webhook', reason: 'refused', url: strictUrl, status: 422, delivery: refused[0]!.delivery });
    expect(letter.transitions!.map((t) => t.id).sort()).toEqual(refused[0]!.transitions.map((t) => t.id).sort());
    expect(letter.response!.startsWith('{"error":"schema mismatch","detail":"xxx')).toBe(true);
    expect(letter.response!.endsWith('…')).toBe(true);
    expect(Buffer.byteLength(letter.response!.slice(0, -1))).toBeLessThanOrEqual(1024);
    // Every c1 transition either was parked or was taken, none both.
    const parkedIds = letter.transitions!.map((t) => t.id);
    const takenIds = strict.accepted(`${run}-c1`).map((t) => t.id);
    expect([...parkedIds, ...takenIds].sort()).toEqual(c1.map((t) => t.id).sort());
    // c2 arrived once, in order; the first receiver never saw a refusal.
    expect(strict.accepted(`${run}-c2`).map((t) => t.to)).toEqual(['intro', 'detail', 'purchase']);
    expect(receiver.requests.every((r) => r.accepted || !r.transitions.some((t) => t.person.startsWith(`${run}-c`)))).toBe(true);
    expect(strict.badSignatures).toEqual([]);
  });
  it('gives a receiver with kinds=stalled the stall alone, and the default receivers stage transitions alone, past a malformed record', async () => {
    const person = `${run}-d1`;
    const stall: StallEvent = { kind: 'stalled', id: `${person}|stall`, person, topic: 'product:sku-1', stage: 'detail', rule: 'quiet', since: 1, at: 2 };
    const entered: AudienceEvent = { kind: 'entered', id: `${person}|aud`, audience: 'hesitant', person, at: 3 };
    // The worker will publish stalls and audience events on this topic; until it does, the test writes them.
    // The malformed records stay valid JSON with a person on the shared Kafka topic (other files' readers
    // parse every record); the embedded log is this app's own, so it also gets one that is not JSON.
    const malformed = [JSON.stringify({ kind: 'stalled', id: `${person}|bad`, person, topic: 42 }), ...(mode === 'embedded' ? ['{"kind":'] : [])];
    await app.backends.producer.send(TOPICS.transitions, [
      { key: person, value: JSON.stringify(stall) },
      ...malformed.map((value) => ({ key: person, value })),
      { key: person, value: JSON.stringify(entered) },
    ]);
    expect((await walk(person, 'sku-3')).status).toBe(202);

    await eventually(async () => (stalls.acceptedEvents(run).length >= 1 ? true : undefined), 30_000, 'the stall delivered');
    await eventually(async () => (receiver.accepted(person).length >= 3 ? true : undefined), 30_000, 'd1’s transitions delivered');
    await eventually(async () => (strict.accepted(person).length >= 3 ? true : undefined), 30_000, 'd1’s transitions delivered to the strict URL');
    await new Promise((r) => setTimeout(r, 1000));

    expect(stalls.acceptedEvents(run)).toEqual([stall]);
    for (const r of [receiver, strict]) {
      expect(r.acceptedEvents(person).map((e) => ('kind' in e ? e.kind : 'stage'))).toEqual(['stage', 'stage', 'stage']);
      expect(r.accepted(person).map((t) => t.to)).toEqual(['intro', 'detail', 'purchase']);
    }
    expect(stalls.badSignatures).toEqual([]);
  });
});
