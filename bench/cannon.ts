/**
 * The closed-loop load of the throughput measurements: autocannon playing the shared scenario
 * (load/scenario.js, the module the k6 scripts play), one batch of 10 events per request.
 */
import autocannon from 'autocannon';
import { CONTENT_TYPE, createScenario } from '../load/scenario.js';

function scenarioRequests(seed: number): autocannon.Request[] {
  const scenario = createScenario({ seed });
  return [
    {
      method: 'POST',
      path: '/v1/collect',
      setupRequest: (req) => {
        const b = scenario.nextBatch(Date.now());
        return {
          ...req,
          method: 'POST',
          path: '/v1/collect',
          headers: { 'content-type': CONTENT_TYPE, 'user-agent': b.userAgent },
          body: JSON.stringify(b.body),
        };
      },
    },
  ];
}

/** autocannon on 127.0.0.1:`port` for `seconds`, with the scenario seeded by `seed`. */
export async function cannon(
  port: number,
  connections: number,
  seconds: number,
  seed: number,
  extra: Partial<autocannon.Options> = {},
): Promise<autocannon.Result> {
  return autocannon({
    url: `http://127.0.0.1:${port}`,
    connections,
    pipelining: 1,
    duration: seconds,
    timeout: 10,
    requests: scenarioRequests(seed),
    ...extra,
  });
}

/** Responses of one status code. */
export const responses = (r: autocannon.Result, status: string) =>
  Number((r.statusCodeStats as Record<string, { count: number | string }>)[status]?.count ?? 0);
