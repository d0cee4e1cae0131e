import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Histogram, type Registry } from 'prom-client';

/**
 * The event loop's delay as a Prometheus histogram (`clickfold_event_loop_delay_seconds`): how
 * long a callback that was due waited for the loop. A process that blocks for tens of
 * milliseconds (a garbage collection, a large batch folded in one go) delays every HTTP answer
 * by as much, which the answers' own latency shows only as a tail; this shows the cause.
 *
 * perf_hooks.monitorEventLoopDelay samples it in native code (no timer of ours on the loop);
 * each scrape moves what it recorded since the last one into the histogram's buckets and starts
 * it again, so the buckets are cumulative counts like any other Prometheus histogram.
 * prom-client's default metrics (`nodejs_eventloop_lag_p99_seconds`...) are percentiles since
 * start, which cannot be aggregated or windowed; these buckets can.
 */
export const LOOP_DELAY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** Sampling resolution of the monitor, ms: a delay shorter than this is not seen. */
const RESOLUTION_MS = 10;

export function registerLoopDelay(registry: Registry, name = 'clickfold_event_loop_delay_seconds'): Histogram {
  if (registry.getSingleMetric(name)) return registry.getSingleMetric(name) as Histogram;
  const monitor = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  monitor.enable();
  return new Histogram({
    name,
    help: 'Event-loop delay: how long a callback that was due waited for the loop (perf_hooks.monitorEventLoopDelay)',
    buckets: LOOP_DELAY_BUCKETS,
    registers: [registry],
    collect() {
      for (const [seconds, n] of delaySamples(monitor)) for (let i = 0; i < n; i++) this.observe(seconds);
      monitor.reset();
    },
  });
}

/**
 * The samples a monitor recorded, as (delay in seconds, how many) pairs, from its percentile
 * table: between two consecutive percentiles lie that share of the samples, at the upper value.
 */
export function delaySamples(h: Pick<IntervalHistogram, 'count' | 'percentiles'>): [number, number][] {
  const out: [number, number][] = [];
  const count = h.count;
  if (!count) return out;
  let below = 0;
  for (const [percentile, ns] of [...h.percentiles].sort((a, b) => a[0] - b[0])) {
    const upTo = Math.round((percentile / 100) * count);
    if (upTo > below) out.push([ns / 1e9, upTo - below]);
    below = Math.max(below, upTo);
  }
  return out;
}
