import { describe, expect, it } from 'vitest';
import {
  bgNbdLogLikelihood,
  expectedPurchases,
  fitBgNbd,
  fitGammaGamma,
  hyp2f1,
  lnGamma,
  probabilityAlive,
  type BgNbd,
  type GammaGamma,
  type Purchaser,
} from '../../history/crm/ltv.js';
import { nelderMead, nelderMeadSteps, runSteps } from '../../history/crm/nelder-mead.js';
import { gammaSample } from '../support/clv-population.js';
import { prng } from '../support/prng.js';

/** Purchasers drawn from the two models with known parameters: what a fit must give back. */
function population(seed: number, n: number, bg: BgNbd, gg: GammaGamma) {
  const u = prng(seed);
  const people: { seen: Purchaser; lambda: number; dead: boolean; nu: number; p: number; lastT: number }[] = [];
  for (let i = 0; i < n; i++) {
    const lambda = gammaSample(u, bg.r, bg.alpha);
    const g1 = gammaSample(u, bg.a, 1);
    const p = g1 / (g1 + gammaSample(u, bg.b, 1));
    const nu = gammaSample(u, gg.q, gg.gamma);
    const age = 60 + u() * 305;
    let t = 0;
    let count = 1;
    let total = gammaSample(u, gg.p, nu);
    let dead = false;
    let last = 0;
    for (;;) {
      t += -Math.log(1 - u()) / lambda;
      if (t > age) break;
      count++;
      total += gammaSample(u, gg.p, nu);
      last = t;
      if (u() < p) {
        dead = true;
        break;
      }
    }
    people.push({ seen: { count, total, recency: last, age }, lambda, dead, nu, p, lastT: age });
  }
  return people;
}

describe('LTV: the special functions', () => {
  it("ln Γ matches known values (Python's math.lgamma for the non-integers)", () => {
    expect(lnGamma(1)).toBeCloseTo(0, 12);
    expect(lnGamma(5)).toBeCloseTo(Math.log(24), 12);
    expect(lnGamma(0.5)).toBeCloseTo(Math.log(Math.sqrt(Math.PI)), 12);
    expect(lnGamma(100.5)).toBeCloseTo(361.4355404677776, 9);
    expect(lnGamma(0.1)).toBeCloseTo(2.2527126517342055, 12);
    expect(lnGamma(30.25)).toBeCloseTo(72.104204742008, 9);
  });

  it('2F1 matches closed forms', () => {
    // 2F1(1, 1; 2; z) = -ln(1 - z) / z
    for (const z of [0.1, 0.5, 0.9]) expect(hyp2f1(1, 1, 2, z)).toBeCloseTo(-Math.log(1 - z) / z, 10);
    // 2F1(a, b; b; z) = (1 - z)^-a
    expect(hyp2f1(2.5, 3, 3, 0.4)).toBeCloseTo(0.6 ** -2.5, 10);
  });

  it('the BG/NBD likelihood equals eq. 6 of the paper written out directly (CDNOW parameters, weeks)', () => {
    // The implementation works in log space with log-sum-exp; this is the plain formula.
    const p: BgNbd = { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };
    const x = 2;
    const tx = 30.43;
    const T = 38.86;
    const byHand =
      lnGamma(p.r + x) -
      lnGamma(p.r) +
      p.r * Math.log(p.alpha) +
      lnGamma(p.a + p.b) +
      lnGamma(p.b + x) -
      lnGamma(p.b) -
      lnGamma(p.a + p.b + x) +
      Math.log((p.alpha + T) ** -(p.r + x) + (p.a / (p.b + x - 1)) * (p.alpha + tx) ** -(p.r + x));
    expect(bgNbdLogLikelihood(p, { count: x + 1, total: 0, recency: tx, age: T })).toBeCloseTo(byHand, 10);
    expect(bgNbdLogLikelihood(p, { count: 1, total: 0, recency: 0, age: T })).toBeCloseTo(p.r * Math.log(p.alpha / (p.alpha + T)), 10);
  });
});

describe('LTV: fitted to a synthetic population with known parameters', () => {
  const trueBg: BgNbd = { r: 0.8, alpha: 20, a: 1.6, b: 4 };
  const trueGg: GammaGamma = { p: 6, q: 4, gamma: 15 };
  const people = population(42, 6000, trueBg, trueGg);
  const seen = people.map((x) => x.seen);

  it('recovers BG/NBD within 20% (r, alpha) and 35% (a, b, which the data pin down less)', () => {
    const fit = fitBgNbd(seen);
    expect(fit.converged).toBe(true);
    expect(Math.abs(fit.params.r / trueBg.r - 1)).toBeLessThan(0.2);
    expect(Math.abs(fit.params.alpha / trueBg.alpha - 1)).toBeLessThan(0.2);
    expect(Math.abs(fit.params.a / trueBg.a - 1)).toBeLessThan(0.35);
    expect(Math.abs(fit.params.b / trueBg.b - 1)).toBeLessThan(0.35);
    // The fit is the maximum: the true parameters do not explain the data better.
    const llTrue = seen.reduce((s, c) => s + bgNbdLogLikelihood(trueBg, c), 0);
    expect(fit.logLikelihood).toBeGreaterThanOrEqual(llTrue);
  });

  it('recovers Gamma-Gamma within 25%, and the mean value per purchase within 5%', () => {
    const fit = fitGammaGamma(seen);
    expect(fit.converged).toBe(true);
    const mean = (g: GammaGamma) => (g.p * g.gamma) / (g.q - 1);
    expect(Math.abs(mean(fit.params) / mean(trueGg) - 1)).toBeLessThan(0.05);
    expect(Math.abs(fit.params.p / trueGg.p - 1)).toBeLessThan(0.25);
    expect(Math.abs(fit.params.q / trueGg.q - 1)).toBeLessThan(0.25);
    expect(Math.abs(fit.params.gamma / trueGg.gamma - 1)).toBeLessThan(0.25);
  });

  it('predicts the purchases of the next 90 days within 10% of what the simulated customers then do', () => {
    const fit = fitBgNbd(seen);
    const u = prng(7);
    let predicted = 0;
    let actual = 0;
    for (const person of people) {
      predicted += expectedPurchases(fit.params, person.seen, 90);
      if (person.dead) continue;
      // Carry the simulation on for 90 more days with the person's own (hidden) rates.
      let t = 0;
      for (;;) {
        t += -Math.log(1 - u()) / person.lambda;
        if (t > 90) break;
        actual++;
        if (u() < person.p) break;
      }
    }
    expect(actual).toBeGreaterThan(500);
    expect(Math.abs(predicted / actual - 1)).toBeLessThan(0.1);
  });

  it('ranks who is still a customer: P(alive) is higher for those who are', () => {
    const fit = fitBgNbd(seen);
    const repeaters = people.filter((x) => x.seen.count > 1);
    const meanAlive = (xs: typeof repeaters) => xs.reduce((s, x) => s + probabilityAlive(fit.params, x.seen), 0) / xs.length;
    expect(meanAlive(repeaters.filter((x) => !x.dead))).toBeGreaterThan(meanAlive(repeaters.filter((x) => x.dead)) + 0.2);
  });
});

describe('LTV: the fit in steps', () => {
  it('yields after every iteration and ends where the fit in one go ends', () => {
    // Rosenbrock's valley: a few hundred iterations.
    const f = (x: readonly number[]) => (1 - x[0]!) ** 2 + 100 * (x[1]! - x[0]! ** 2) ** 2;
    const whole = nelderMead(f, [-1.2, 1]);
    const steps = nelderMeadSteps(f, [-1.2, 1]);
    let yields = 0;
    let r = steps.next();
    for (; !r.done; r = steps.next()) yields++;
    expect(yields).toBe(whole.iterations);
    expect(yields).toBeGreaterThan(50);
    expect(r.value).toEqual(whole);
    expect(runSteps(nelderMeadSteps(f, [-1.2, 1]))).toEqual(whole);
    expect(whole.x[0]).toBeCloseTo(1, 3);
  });
});
