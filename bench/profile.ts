/**
 * Reads a V8 .cpuprofile (node --cpu-prof) and says where the time went: self time by leaf
 * function, and by "owner", the nearest package or project file on the stack (so JSON.parse
 * called by ingest/collect.ts counts for collect.ts, a socket write by kafkajs for kafkajs).
 *
 *   npx tsx bench/profile.ts <file.cpuprofile> [top]
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * esbuild's (unminified) bundle starts each module's code with a `// path/to/module.ts` line:
 * that maps a line of the bundle back to its module.
 */
const bundleMaps = new Map<string, { line: number; module: string }[]>();
function moduleInBundle(path: string, line: number): string | null {
  let map = bundleMaps.get(path);
  if (!map) {
    map = [];
    try {
      readFileSync(path, 'utf8')
        .split('\n')
        .forEach((text, i) => {
          const m = /^\/\/ ((?:[\w.@-]+\/)*[\w.@-]+\.[cm]?[tj]s)$/.exec(text);
          if (m) map!.push({ line: i, module: m[1]! });
        });
    } catch {
      /* not readable: no mapping */
    }
    bundleMaps.set(path, map);
  }
  let found: string | null = null;
  for (const e of map) {
    if (e.line > line) break;
    found = e.module;
  }
  return found;
}

function place(url: string, line = 0): string {
  if (!url) return '';
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  if (path.includes('/node_modules/.cache/')) return moduleInBundle(path, line) ?? relative(ROOT, path);
  const nm = path.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = path.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (path.startsWith('node:')) return path;
  return relative(ROOT, path) || path;
}

/** The owner of a frame: a package or project file, not node internals or native code. */
function ownerOf(url: string, line: number): string | null {
  const p = place(url, line);
  if (!p || p.startsWith('node:')) return null;
  return p;
}

export interface ProfileSummary {
  file: string;
  seconds: number;
  /** Percent of the profile's wall time, where the process was on CPU. */
  busy: number;
  byOwner: { owner: string; pct: number }[];
  byFunction: { fn: string; pct: number }[];
}

export function summarizeProfile(file: string, top = 15): ProfileSummary {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const ownerCache = new Map<number, string>();
  const owner = (id: number): string => {
    const cached = ownerCache.get(id);
    if (cached) return cached;
    let cur: number | undefined = id;
    let found: string | null = null;
    while (cur !== undefined && !found) {
      const f = byId.get(cur)!.callFrame;
      found = ownerOf(f.url, f.lineNumber);
      cur = parent.get(cur);
    }
    const leaf = byId.get(id)!.callFrame;
    const result = found ?? (leaf.url.startsWith('node:') ? 'node internals' : leaf.functionName || '(native)');
    ownerCache.set(id, result);
    return result;
  };

  const self = new Map<string, number>();
  const owners = new Map<string, number>();
  let total = 0;
  let idle = 0;
  prof.samples.forEach((id, i) => {
    const dt = prof.timeDeltas[i] ?? 0;
    const n = byId.get(id)!;
    const f = n.callFrame;
    total += dt;
    if (f.functionName === '(idle)') {
      idle += dt;
      return;
    }
    const where = place(f.url, f.lineNumber);
    const key = `${f.functionName || '(anonymous)'} ${where}${f.url && !f.url.includes('/node_modules/.cache/') ? `:${f.lineNumber + 1}` : ''}`.trim();
    self.set(key, (self.get(key) ?? 0) + dt);
    const o = f.functionName === '(garbage collector)' ? '(garbage collector)' : f.functionName === '(program)' ? '(program)' : owner(id);
    owners.set(o, (owners.get(o) ?? 0) + dt);
  });
  const busyTime = total - idle;
  const pct = (t: number) => Math.round((t / busyTime) * 1000) / 10;
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top);
  return {
    file,
    seconds: total / 1e6,
    busy: Math.round((busyTime / total) * 1000) / 10,
    byOwner: sorted(owners).map(([o, t]) => ({ owner: o, pct: pct(t) })),
    byFunction: sorted(self).map(([fn, t]) => ({ fn, pct: pct(t) })),
  };
}

export function formatProfile(s: ProfileSummary): string {
  const lines = [`${s.file}: ${s.seconds.toFixed(1)} s sampled, on CPU ${s.busy}% of it; shares of the CPU time:`];
  lines.push('  by owner (nearest package or project file on the stack):');
  for (const o of s.byOwner) lines.push(`    ${o.pct.toFixed(1).padStart(5)}%  ${o.owner}`);
  lines.push('  by function (self time):');
  for (const f of s.byFunction) lines.push(`    ${f.pct.toFixed(1).padStart(5)}%  ${f.fn}`);
  return lines.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: npx tsx bench/profile.ts <file.cpuprofile> [top]');
    process.exit(2);
  }
  console.log(formatProfile(summarizeProfile(file, Number(process.argv[3] ?? 20))));
}
