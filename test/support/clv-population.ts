import type { BgNbd, GammaGamma } from '../../history/crm/ltv.js';
import { prng } from './prng.js';

/** Gamma(shape, rate) by Marsaglia & Tsang. */
export function gammaSample(u: () => number, shape: number, rate: number): number {
  if (shape < 1) return gammaSample(u, shape + 1, rate) * u() ** (1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      // Box-Muller for a standard normal.
      x = Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const w = u();
    if (w < 1 - 0.0331 * x ** 4 || Math.log(w) < 0.5 * x * x + d * (1 - v + Math.log(v))) return (d * v) / rate;
  }
}

export interface SyntheticCustomer {
  /** Days after the first purchase of each purchase (the first at 0), and each value. */
  purchases: { day: number; value: number }[];
  /** Days from the first purchase to the end of the observation. */
  age: number;
}

/**
 * Customers drawn from BG/NBD (purchase rate ~ Gamma(r, alpha), drop-out after each repeat purchase
 * with p ~ Beta(a, b)) and Gamma-Gamma (value ~ Gamma(p, nu), nu ~ Gamma(q, gamma)), first purchases
 * spread over 60 to 365 days before the end: what a fit must give back.
 */
export function syntheticCustomers(seed: number, n: number, bg: BgNbd, gg: GammaGamma): SyntheticCustomer[] {
  const u = prng(seed);
  const out: SyntheticCustomer[] = [];
  for (let i = 0; i < n; i++) {
    const lambda = gammaSample(u, bg.r, bg.alpha);
    const g1 = gammaSample(u, bg.a, 1);
    const p = g1 / (g1 + gammaSample(u, bg.b, 1));
    const nu = gammaSample(u, gg.q, gg.gamma);
    const age = 60 + u() * 305;
    const purchases = [{ day: 0, value: gammaSample(u, gg.p, nu) }];
    let t = 0;
    for (;;) {
      t += -Math.log(1 - u()) / lambda;
      if (t > age) break;
      purchases.push({ day: t, value: gammaSample(u, gg.p, nu) });
      if (u() < p) break;
    }
    out.push({ purchases, age });
  }
  return out;
}
