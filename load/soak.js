// @ts-check
/**
 * Soak: a moderate constant rate for a long time. Leaks and slow growth show up as the late
 * part of the run being slower than the early part, so both are thresholded separately; a run
 * that goes bad stops early (abortOnFail) instead of burning the hour.
 *
 *   k6 run load/soak.js -e TARGET=http://127.0.0.1:8080 [-e RATE=900] [-e DURATION=1h]
 */
import exec from 'k6/execution';
import { collect, num, str, summaryTrendStats, vusFor } from './common.js';

const RATE = num('RATE', 900);
const DURATION = str('DURATION', '1h');
const P99_MS = num('P99_MS', 25);
/** The first and the last EDGE of the run are compared (default: a sixth of it, 10 min of 1 h). */
const EDGE = num('EDGE_FRACTION', 1 / 6);

const totalSeconds = (() => {
  const m = /^(\d+(?:\.\d+)?)(s|m|h)$/.exec(DURATION);
  if (!m) throw new Error(`-e DURATION=${DURATION}: use a k6 duration such as 90s, 30m or 1h`);
  return Number(m[1]) * (m[2] === 's' ? 1 : m[2] === 'm' ? 60 : 3600);
})();

/** @type {import('k6/options').Options} */
export const options = {
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: vusFor(RATE, 20),
      maxVUs: vusFor(RATE, 500),
    },
  },
  thresholds: {
    'http_req_failed{name:collect}': ['rate<0.001', { threshold: 'rate<0.05', abortOnFail: true, delayAbortEval: '1m' }],
    'http_req_duration{part:early}': [`p(99)<${P99_MS}`],
    'http_req_duration{part:late}': [`p(99)<${P99_MS}`],
    checks: ['rate>0.999'],
    dropped_iterations: [`count<${Math.ceil(RATE * totalSeconds * 0.001)}`],
  },
  summaryTrendStats,
  discardResponseBodies: true,
};

export default function () {
  const t = (Date.now() - exec.scenario.startTime) / 1000;
  const part = t < totalSeconds * EDGE ? 'early' : t > totalSeconds * (1 - EDGE) ? 'late' : 'middle';
  collect({ part });
}
