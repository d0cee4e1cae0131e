/**
 * For context: what HTTP alone costs in Node. `bare`: node:http that reads the body and answers
 * 204; `hono`: a Hono route that only parses the JSON. The load generator is the limit here.
 */
import { cannon } from '../cannon.js';
import { roles, type Harness } from '../harness.js';
import { cpuMeter, spread, type CpuReport } from '../lib.js';
import { cpuNote, cpuPerEvent, middle, type Figure } from '../report.js';
import type { Settings } from '../settings.js';
import { INGEST_NODE_FLAGS } from '../../apps/shared/node-flags.js';

export type ContextOptions = Pick<Settings, 'runs' | 'contextSeconds' | 'connections'>;

export type ContextFigures = {
  bare: Figure;
  bareCpu: Figure;
  hono: Figure;
  honoCpu: Figure;
};

export async function measureContext(h: Harness, o: ContextOptions): Promise<{ figures: ContextFigures; honoCpuPerEvent: number }> {
  const bare = await measureServer(h, o, 'bare');
  const hono = await measureServer(h, o, 'hono');
  return { figures: { bare: bare.throughput, bareCpu: bare.cpu, hono: hono.throughput, honoCpu: hono.cpu }, honoCpuPerEvent: hono.cpuPerEvent };
}

/** Only the Hono route (the floor of ingest's CPU ratio), when the rest of the context is not asked for. */
export async function measureHonoFloor(h: Harness, o: ContextOptions): Promise<{ figures: Pick<ContextFigures, 'honoCpu'>; honoCpuPerEvent: number }> {
  const hono = await measureServer(h, o, 'hono');
  return { figures: { honoCpu: hono.cpu }, honoCpuPerEvent: hono.cpuPerEvent };
}

/**
 * Ingest's CPU per event over its floor, same run: the Hono route that only parses the JSON plus
 * the raw producer (the same client) per event.
 */
export function ingestCpuRatio(ingestUs: number, honoUs: number, rawUs: number): number {
  return ingestUs / (honoUs + rawUs);
}

async function measureServer(h: Harness, o: ContextOptions, mode: 'bare' | 'hono'): Promise<{ throughput: Figure; cpu: Figure; cpuPerEvent: number }> {
  // Under ingest's V8 flags: the floor of ingest's work, measured as ingest runs.
  const p = await h.start(mode, {}, [...INGEST_NODE_FLAGS]);
  await cannon(p.port!, o.connections, 2, 7); // warm-up
  const rates: number[] = [];
  const cpus: CpuReport[] = [];
  for (let i = 0; i < o.runs; i++) {
    const meter = cpuMeter(roles(h.services, { server: p }));
    const r = await cannon(p.port!, o.connections, o.contextSeconds, 100 + i);
    cpus.push(meter.stop());
    rates.push(((r['2xx'] ?? 0) * 10) / r.duration);
  }
  await p.stop();
  const cpuSpread = spread(rates.map((r, i) => cpuPerEvent(cpus[i]!, 'server', r)));
  return {
    cpuPerEvent: cpuSpread.median,
    throughput: {
      key: `context.${mode}`,
      what: mode === 'bare' ? 'bare node:http (read body, 204), events/s' : 'Hono route that only parses the JSON, events/s',
      unit: 'events/s',
      value: spread(rates),
      note: `${cpuNote(middle(cpus))} (the load generator is the limit here)`,
    },
    cpu: {
      key: `context.${mode}.cpu`,
      what: `${mode === 'bare' ? 'bare node:http' : 'Hono + JSON.parse'}: server CPU per event`,
      unit: 'µs/event',
      value: cpuSpread,
    },
  };
}
