/**
 * Nelder-Mead minimisation (the downhill simplex, with the standard coefficients), for the few
 * parameters of the customer-value models: no gradients needed, and a handful of dimensions is
 * where it does well. Bounded in iterations so a fit always ends.
 */
export interface Minimum {
  x: number[];
  value: number;
  iterations: number;
  converged: boolean;
}

/** Runs a computation written as steps (a generator that yields between them) to its end, at once. */
export function runSteps<T>(steps: Generator<void, T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

export function nelderMead(f: (x: readonly number[]) => number, start: readonly number[], opts: NelderMeadOptions = {}): Minimum {
  return runSteps(nelderMeadSteps(f, start, opts));
}

export interface NelderMeadOptions {
  step?: number;
  maxIterations?: number;
  tolerance?: number;
}

/**
 * The same minimisation, yielding after each iteration: a caller on an event loop (the worker's CRM
 * job) runs it in slices, so a fit of seconds never holds up folds, probes or a SIGTERM.
 */
export function* nelderMeadSteps(f: (x: readonly number[]) => number, start: readonly number[], opts: NelderMeadOptions = {}): Generator<void, Minimum> {
  const n = start.length;
  const step = opts.step ?? 0.5;
  const maxIterations = opts.maxIterations ?? 2000;
  const tolerance = opts.tolerance ?? 1e-9;
  const value = (x: number[]) => {
    const v = f(x);
    return Number.isFinite(v) ? v : Number.POSITIVE_INFINITY;
  };
  let simplex = [start.slice(), ...start.map((_, i) => start.map((s, j) => (i === j ? s + step : s)))].map((x) => ({ x, v: value(x) }));
  const along = (a: number[], b: number[], t: number) => a.map((ai, i) => ai + t * (b[i]! - ai));
  let iterations = 0;
  for (; iterations < maxIterations; iterations++) {
    simplex.sort((p, q) => p.v - q.v);
    const best = simplex[0]!;
    const worst = simplex[n]!;
    if (Math.abs(worst.v - best.v) <= tolerance * (Math.abs(best.v) + tolerance)) return { x: best.x, value: best.v, iterations, converged: true };
    const centroid = new Array<number>(n).fill(0);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) centroid[j]! += simplex[i]!.x[j]! / n;
    const reflected = along(centroid, worst.x, -1);
    const vr = value(reflected);
    if (vr < best.v) {
      const expanded = along(centroid, worst.x, -2);
      const ve = value(expanded);
      simplex[n] = ve < vr ? { x: expanded, v: ve } : { x: reflected, v: vr };
    } else if (vr < simplex[n - 1]!.v) {
      simplex[n] = { x: reflected, v: vr };
    } else {
      const contracted = vr < worst.v ? along(centroid, reflected, 0.5) : along(centroid, worst.x, 0.5);
      const vc = value(contracted);
      if (vc < Math.min(vr, worst.v)) simplex[n] = { x: contracted, v: vc };
      else simplex = simplex.map((p, i) => (i === 0 ? p : { x: along(best.x, p.x, 0.5), v: 0 })).map((p, i) => (i === 0 ? p : { x: p.x, v: value(p.x) }));
    }
    yield;
  }
  simplex.sort((p, q) => p.v - q.v);
  return { x: simplex[0]!.x, value: simplex[0]!.v, iterations, converged: false };
}
