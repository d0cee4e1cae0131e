import { sleep } from '../services/proc.js';

/** What a soak plays: the scenario's next request body, as the snippet would send it. */
export interface BatchSource {
  nextBatch(now: number): { body: unknown; userAgent: string };
}

export interface SteadyLoadOptions {
  /** The collect endpoint. */
  url: string;
  /** Events per second, sent `batch` to a request. */
  rate: number;
  batch: number;
  seconds: number;
  source: BatchSource;
  sampleEverySeconds: number;
  /** Called every `sampleEverySeconds` (and at 0) with the requests sent and failed so far. */
  sample(elapsedSeconds: number, sent: number, failed: number): Promise<void>;
}

/**
 * The soaks' paced sender: each tick sends what the rate owes (at most 64 requests in flight, over
 * fetch's keep-alive connections), counts answers other than 202 as failed, samples on schedule,
 * and returns once every request has its answer.
 */
export async function steadyLoad(o: SteadyLoadOptions): Promise<{ sent: number; failed: number }> {
  const start = Date.now();
  let sent = 0;
  let failed = 0;
  let inFlight = 0;
  let nextSample = 0;
  while ((Date.now() - start) / 1000 < o.seconds) {
    const elapsed = (Date.now() - start) / 1000;
    const owed = Math.floor((elapsed * o.rate) / o.batch) - sent;
    for (let i = 0; i < owed && inFlight < 64; i++) {
      sent++;
      inFlight++;
      const b = o.source.nextBatch(Date.now());
      fetch(o.url, { method: 'POST', headers: { 'content-type': 'text/plain', 'user-agent': b.userAgent }, body: JSON.stringify(b.body) })
        .then((r) => {
          if (r.status !== 202) failed++;
          return r.arrayBuffer();
        })
        .catch(() => failed++)
        .finally(() => inFlight--);
    }
    if (elapsed >= nextSample) {
      await o.sample(Math.round(elapsed), sent, failed);
      nextSample += o.sampleEverySeconds;
    }
    await sleep(20);
  }
  while (inFlight > 0) await sleep(50);
  return { sent, failed };
}
