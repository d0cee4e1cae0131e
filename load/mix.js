// @ts-check
/**
 * A realistic mix: each VU is a browser playing one visitor at a time of the shared scenario
 * (page views and clicks walking intro, detail and purchase across products, 10 events per
 * POST), with think time between batches. A new visitor first loads the snippet (GET /t.js);
 * a few batches are retried (a flaky network: ingest must accept the same events again and the
 * history counts them once) and a few carry one broken event (a buggy page: 400 with the good
 * events kept).
 *
 *   k6 run load/mix.js -e TARGET=http://127.0.0.1:8080 [-e BROWSERS=300] [-e DURATION=5m] [-e THINK_S=2]
 *
 * With the defaults (300 browsers, about 2 s per event, so 20 s between batches) this is a
 * gentle 15 batches/s; raise BROWSERS or lower THINK_S for more.
 */
import { check, sleep } from 'k6';
import http from 'k6/http';
import { num, postBatch, str, summaryTrendStats, TARGET, vuScenario } from './common.js';
import { CONTENT_TYPE } from './scenario.js';

const BROWSERS = num('BROWSERS', 300);
const DURATION = str('DURATION', '5m');
const THINK_S = num('THINK_S', 2);
const RETRY_SHARE = num('RETRY_SHARE', 0.02);
const BAD_SHARE = num('BAD_SHARE', 0.005);
const P99_MS = num('P99_MS', 25);

/** @type {import('k6/options').Options} */
export const options = {
  scenarios: {
    browsers: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: '30s', target: BROWSERS },
        { duration: DURATION, target: BROWSERS },
        { duration: '15s', target: 0 },
      ],
      gracefulRampDown: '10s',
    },
  },
  thresholds: {
    'http_req_failed{name:collect}': ['rate<0.001'],
    'http_req_duration{name:collect}': [`p(99)<${P99_MS}`],
    'http_req_failed{name:collect_bad}': ['rate<0.001'],
    'http_req_failed{name:snippet}': ['rate<0.001'],
    checks: ['rate>0.999'],
  },
  summaryTrendStats,
  discardResponseBodies: true,
};

// The snippet may not be built on the target (`npm run build`): 404 is then the honest answer.
const snippetStatuses = http.expectedStatuses(200, 404);
const badStatuses = http.expectedStatuses(400);
let lastVisitor = '';

export default function () {
  // One visitor at a time per browser: the batches come in the visitor's order.
  const batch = vuScenario(1).nextBatch(Date.now());
  if (batch.visitor !== lastVisitor) {
    lastVisitor = batch.visitor;
    const js = http.get(`${TARGET}/t.js`, { headers: { 'user-agent': batch.userAgent }, tags: { name: 'snippet' }, responseCallback: snippetStatuses });
    check(js, { 'snippet served (or not built)': (r) => r.status === 200 || r.status === 404 });
  }

  const r = Math.random();
  if (r < BAD_SHARE) {
    // A page that reports a page view without its URL: that event is refused, the others kept.
    const events = batch.body.events.map((e, i) => (i === 0 ? Object.assign({}, e, { type: 'page', url: undefined }) : e));
    const res = http.post(`${TARGET}/v1/collect`, JSON.stringify(Object.assign({}, batch.body, { events })), {
      headers: { 'content-type': CONTENT_TYPE, 'user-agent': batch.userAgent },
      tags: { name: 'collect_bad' },
      responseCallback: badStatuses,
    });
    check(res, { 'a broken event gets 400': (x) => x.status === 400 });
  } else {
    const ok = postBatch(batch);
    // The response got lost on the way back: the snippet sends the same batch again.
    if (ok && r < BAD_SHARE + RETRY_SHARE) postBatch(batch, { retry: 'yes' });
  }
  sleep(THINK_S * batch.body.events.length * (0.5 + Math.random()));
}
