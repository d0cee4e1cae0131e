// @ts-check
/**
 * Steady rate: a constant arrival rate of batches (10 events each) for a while, with the latency
 * target of bench/targets.ts at half the throughput target (15,000 events/s, p99 < 25 ms).
 *
 *   k6 run load/steady.js -e TARGET=http://127.0.0.1:8080 [-e RATE=1500] [-e DURATION=2m] [-e P99_MS=25]
 *
 * RATE is in requests (batches) per second; events/s = RATE x 10.
 */
import { collect, num, str, summaryTrendStats, vusFor } from './common.js';

const RATE = num('RATE', 1500);
const DURATION = str('DURATION', '2m');
const P99_MS = num('P99_MS', 25);

/** @type {import('k6/options').Options} */
export const options = {
  scenarios: {
    steady: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: vusFor(RATE, 20),
      maxVUs: vusFor(RATE, 200),
    },
  },
  thresholds: {
    'http_req_failed{name:collect}': ['rate<0.001'],
    'http_req_duration{name:collect}': [`p(99)<${P99_MS}`, `p(50)<${Math.max(1, Math.round(P99_MS / 3))}`],
    checks: ['rate>0.999'],
    // The generator itself fell behind (not enough VUs, or this machine is saturated): the
    // figures would flatter the target, so the run fails.
    dropped_iterations: ['count<10'],
  },
  summaryTrendStats,
  discardResponseBodies: true,
};

export default function () {
  collect();
}
