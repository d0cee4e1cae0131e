// @ts-check
/**
 * Ramp and spike: warm up, ramp to RATE, hold, spike to SPIKE x RATE, fall back and hold again.
 * Each request is tagged with its phase, so the thresholds say what matters: the hold is fast,
 * the spike may be slow (or answer 503 with Retry-After) but never errors otherwise, and the
 * service recovers after it.
 *
 *   k6 run load/ramp.js -e TARGET=http://127.0.0.1:8080 [-e RATE=1500] [-e SPIKE=3] [-e STEP=30s]
 *
 * Phases (STEP is the unit, default 30 s): warm 1, ramp 2, hold 2, spike-up 10 s, spike 1,
 * recovery 2, down 1.
 */
import exec from 'k6/execution';
import { collect, num, str, summaryTrendStats, vusFor } from './common.js';

const RATE = num('RATE', 1500);
const SPIKE = num('SPIKE', 3);
const STEP = str('STEP', '30s');
const P99_MS = num('P99_MS', 25);
const RECOVERY_P99_MS = num('RECOVERY_P99_MS', P99_MS * 2);

/** @param {string} d @returns {number} seconds */
function seconds(d) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(d);
  if (!m) throw new Error(`-e STEP=${d}: use a k6 duration such as 30s or 2m`);
  return Number(m[1]) * (m[2] === 'ms' ? 0.001 : m[2] === 's' ? 1 : m[2] === 'm' ? 60 : 3600);
}

const step = seconds(STEP);
/** [phase, seconds, target rate at its end] */
const PLAN = /** @type {const} */ ([
  ['warm', step, RATE * 0.1],
  ['ramp', 2 * step, RATE],
  ['hold', 2 * step, RATE],
  ['spike', 10, RATE * SPIKE],
  ['spike', step, RATE * SPIKE],
  ['recovery', 10, RATE],
  ['recovery', 2 * step, RATE],
  ['down', step, 0],
]);

/** @type {import('k6/options').Options} */
export const options = {
  scenarios: {
    ramp: {
      executor: 'ramping-arrival-rate',
      startRate: 1,
      timeUnit: '1s',
      stages: PLAN.map(([, s, target]) => ({ duration: `${s}s`, target: Math.round(target) })),
      preAllocatedVUs: vusFor(RATE, 20),
      maxVUs: vusFor(RATE * SPIKE, 500),
    },
  },
  thresholds: {
    'http_req_duration{phase:hold}': [`p(99)<${P99_MS}`],
    'http_req_failed{phase:hold}': ['rate<0.001'],
    // Under the spike, 503 + Retry-After is an acceptable answer (the snippet retries); more than
    // 5% of them is not.
    'http_req_failed{phase:spike}': ['rate<0.05'],
    'http_req_duration{phase:recovery}': [`p(99)<${RECOVERY_P99_MS}`],
    'http_req_failed{phase:recovery}': ['rate<0.001'],
    'http_req_failed{name:collect}': ['rate<0.02'],
  },
  summaryTrendStats,
  discardResponseBodies: true,
};

/** The phase of the plan at `t` seconds into the scenario. */
function phaseAt(/** @type {number} */ t) {
  let end = 0;
  for (const [phase, s] of PLAN) {
    end += s;
    if (t < end) return phase;
  }
  return 'down';
}

export default function () {
  const elapsed = (Date.now() - exec.scenario.startTime) / 1000;
  collect({ phase: phaseAt(elapsed) });
}
