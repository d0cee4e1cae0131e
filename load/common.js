// @ts-check
/**
 * What the k6 scripts share: the target, environment knobs, and sending one batch of the shared
 * scenario (./scenario.js, the same module `npm run bench` plays) as the snippet sends it.
 *
 *   k6 run load/steady.js -e TARGET=http://127.0.0.1:8080 [-e RATE=1500] [-e DURATION=2m]
 */
import { check } from 'k6';
import http from 'k6/http';
import { Counter } from 'k6/metrics';
import { CONTENT_TYPE, createScenario } from './scenario.js';

/** @typedef {import('./scenario.js').Scenario} Scenario */
/** @typedef {import('./scenario.js').ScenarioBatch} ScenarioBatch */
/** @typedef {import('k6/options').Options} Options */

/** Where ingest listens; any ingest (all-in-one `npm start`, or the ingest process alone). */
export const TARGET = (__ENV.TARGET || 'http://127.0.0.1:8080').replace(/\/+$/, '');

/** @param {string} name @param {number} fallback */
export function num(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`-e ${name}=${raw}: expected a non-negative number`);
  return n;
}

/** @param {string} name @param {string} fallback */
export function str(name, fallback) {
  const raw = __ENV[name];
  return raw === undefined || raw === '' ? fallback : raw;
}

/** Events acknowledged by ingest (202: Kafka has them), the figure to compare with the bench. */
export const eventsAccepted = new Counter('events_accepted');
/** 503s: Kafka could not take the events in time (the snippet retries after Retry-After). */
export const unavailable = new Counter('collect_unavailable');

/** @type {Scenario | undefined} */
let scenario;

/**
 * This VU's scenario. Each VU plays its own visitors (seeded by SEED and the VU number, so two
 * VUs never share a visitor); VISITORS is how many walk at once per VU.
 * @param {number} [visitors]
 */
export function vuScenario(visitors) {
  if (!scenario) {
    scenario = createScenario({
      seed: num('SEED', 1) * 1_000_003 + __VU,
      activeVisitors: visitors ?? num('VISITORS', 20),
      skus: num('SKUS', 500),
      eventsPerDialogue: num('EVENTS_PER_DIALOGUE', 20),
    });
  }
  return scenario;
}

const accept202 = http.expectedStatuses(202);

/**
 * POSTs one batch to /v1/collect as the snippet does (a text/plain JSON string) and checks the
 * 202. Returns whether ingest accepted it.
 * @param {ScenarioBatch} batch
 * @param {Record<string, string>} [tags]
 */
export function postBatch(batch, tags = {}) {
  const res = http.post(`${TARGET}/v1/collect`, JSON.stringify(batch.body), {
    headers: { 'content-type': CONTENT_TYPE, 'user-agent': batch.userAgent },
    tags: Object.assign({ name: 'collect' }, tags),
    responseCallback: accept202,
    timeout: '10s',
  });
  const ok = check(res, { 'collect answered 202': (r) => r.status === 202 }, tags);
  if (ok) eventsAccepted.add(batch.body.events.length, tags);
  else if (res.status === 503) unavailable.add(1, tags);
  return ok;
}

/** The next batch of this VU's scenario, posted. */
export function collect(tags = {}) {
  return postBatch(vuScenario().nextBatch(Date.now()), tags);
}

/**
 * VUs an arrival-rate executor needs for `rate` requests/s when a request takes up to
 * `latencyMs`: Little's law with headroom.
 * @param {number} rate @param {number} [latencyMs]
 */
export function vusFor(rate, latencyMs = 50) {
  return Math.max(10, Math.ceil((rate * latencyMs) / 1000) * 2);
}

/** Trend stats shown in the end-of-test summary. */
export const summaryTrendStats = ['min', 'med', 'avg', 'p(90)', 'p(99)', 'max'];
