import { nelderMeadSteps, runSteps } from './nelder-mead.js';

/**
 * Customer lifetime value, pure: the BG/NBD model of how often a customer buys and whether they are
 * still a customer (Fader, Hardie & Lee, "Counting Your Customers the Easy Way", 2005), and the
 * Gamma-Gamma model of how much they spend per purchase (Fader, Hardie & Lee, "RFM and CLV", 2005).
 * Both are fitted by maximum likelihood to one site's purchasers, from exactly what the fold keeps
 * per person: the first and last purchase, the number of purchases, their total. The standard pair
 * for non-contractual settings (a shop: nobody says when they stop being a customer), and the one
 * the well-known implementations (R's BTYD, Python's lifetimes) provide, so figures can be checked
 * against them.
 *
 * Times are in days. Value to date is the total; projected value over a horizon is the expected
 * number of purchases in it times the expected value per purchase, undiscounted.
 */

export interface Purchaser {
  /** Purchases made (at least 1). */
  count: number;
  /** Sum of their values. */
  total: number;
  /** Days from the first purchase to the last. */
  recency: number;
  /** Days from the first purchase to now. */
  age: number;
}

export interface BgNbd {
  r: number;
  alpha: number;
  a: number;
  b: number;
}

export interface GammaGamma {
  p: number;
  q: number;
  gamma: number;
}

const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012,
  9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Γ(x) for x > 0 (Lanczos, g = 7: about 15 significant digits). */
export function lnGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - lnGamma(1 - x);
  const z = x - 1;
  let s = LANCZOS[0]!;
  for (let i = 1; i < 9; i++) s += LANCZOS[i]! / (z + i);
  const t = z + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(s);
}

const logSumExp = (x: number, y: number) => (x > y ? x + Math.log1p(Math.exp(y - x)) : y + Math.log1p(Math.exp(x - y)));

/** The purchaser's repeat purchases (BG/NBD's x, t_x, T). */
const repeat = (c: Purchaser) => ({ x: c.count - 1, tx: c.recency, T: c.age });

/** Log-likelihood of one purchaser under BG/NBD (eq. 6 of the paper). */
export function bgNbdLogLikelihood({ r, alpha, a, b }: BgNbd, c: Purchaser): number {
  const { x, tx, T } = repeat(c);
  const head = lnGamma(r + x) - lnGamma(r) + r * Math.log(alpha) + lnGamma(a + b) + lnGamma(b + x) - lnGamma(b) - lnGamma(a + b + x);
  const stayed = -(r + x) * Math.log(alpha + T);
  if (x === 0) return head + stayed;
  const left = Math.log(a) - Math.log(b + x - 1) - (r + x) * Math.log(alpha + tx);
  return head + logSumExp(stayed, left);
}

/** Gauss's hypergeometric 2F1(a, b; c; z) for 0 <= z < 1, by its series (z here stays well below 1). */
export function hyp2f1(a: number, b: number, c: number, z: number): number {
  let term = 1;
  let sum = 1;
  for (let k = 0; k < 20_000; k++) {
    term *= (((a + k) * (b + k)) / ((c + k) * (k + 1))) * z;
    sum += term;
    if (Math.abs(term) < 1e-14 * Math.abs(sum)) break;
  }
  return sum;
}

/** The probability that the purchaser is still a customer now (eq. 11). */
export function probabilityAlive({ r, alpha, a, b }: BgNbd, c: Purchaser): number {
  const { x, tx, T } = repeat(c);
  if (x === 0) return 1;
  return 1 / (1 + (a / (b + x - 1)) * ((alpha + T) / (alpha + tx)) ** (r + x));
}

/** Expected purchases in the next `days`, given the purchaser's history (eq. 10). */
export function expectedPurchases({ r, alpha, a, b }: BgNbd, c: Purchaser, days: number): number {
  const { x, tx, T } = repeat(c);
  const z = days / (alpha + T + days);
  const head = (a + b + x - 1) / (a - 1);
  const body = 1 - ((alpha + T) / (alpha + T + days)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z);
  const alive = x > 0 ? 1 + (a / (b + x - 1)) * ((alpha + T) / (alpha + tx)) ** (r + x) : 1;
  return (head * body) / alive;
}

/** Log-likelihood of one purchaser's mean value under Gamma-Gamma (all their purchases count). */
export function gammaGammaLogLikelihood({ p, q, gamma }: GammaGamma, c: Purchaser): number {
  const x = c.count;
  const m = c.total / c.count;
  return (
    lnGamma(p * x + q) -
    lnGamma(p * x) -
    lnGamma(q) +
    q * Math.log(gamma) +
    (p * x - 1) * Math.log(m) +
    p * x * Math.log(x) -
    (p * x + q) * Math.log(gamma + m * x)
  );
}

/** Expected value of the purchaser's next purchases: their own mean, pulled toward the site's. */
export function expectedValuePerPurchase({ p, q, gamma }: GammaGamma, c: Purchaser): number {
  const x = c.count;
  return (p * (gamma + c.total)) / (p * x + q - 1);
}

export interface Fit<P> {
  params: P;
  logLikelihood: number;
  converged: boolean;
  /** Purchasers fitted on. */
  n: number;
}

/** Fewer purchasers than this and a fit says little: callers show value to date only. */
export const MIN_PURCHASERS_TO_FIT = 50;

function* maximumLikelihood<P>(
  names: (keyof P)[],
  ll: (p: P, c: Purchaser) => number,
  customers: readonly Purchaser[],
  start: number[],
): Generator<void, Fit<P>> {
  // In log space, so every parameter stays positive whatever the simplex tries.
  const of = (theta: readonly number[]) => Object.fromEntries(names.map((k, i) => [k, Math.exp(theta[i]!)])) as P;
  const negative = (theta: readonly number[]) => {
    if (theta.some((t) => Math.abs(t) > 20)) return Number.POSITIVE_INFINITY;
    const p = of(theta);
    let sum = 0;
    for (const c of customers) sum += ll(p, c);
    return -sum;
  };
  let best = yield* nelderMeadSteps(negative, start.map(Math.log), { maxIterations: 4000 });
  // A restart from where it stopped: the simplex can shrink early on a flat ridge.
  best = yield* nelderMeadSteps(negative, best.x, { maxIterations: 4000, step: 0.1 });
  return { params: of(best.x), logLikelihood: -best.value, converged: best.converged, n: customers.length };
}

export const fitBgNbd = (customers: readonly Purchaser[]): Fit<BgNbd> => runSteps(fitBgNbdSteps(customers));
export const fitGammaGamma = (customers: readonly Purchaser[]): Fit<GammaGamma> => runSteps(fitGammaGammaSteps(customers));

/** The fits as steps (nelder-mead.ts nelderMeadSteps), for a caller that runs them in slices. */
export function* fitBgNbdSteps(customers: readonly Purchaser[]): Generator<void, Fit<BgNbd>> {
  const meanAge = customers.reduce((s, c) => s + c.age, 0) / Math.max(1, customers.length);
  const meanRepeat = customers.reduce((s, c) => s + c.count - 1, 0) / Math.max(1, customers.length);
  return yield* maximumLikelihood<BgNbd>(['r', 'alpha', 'a', 'b'], bgNbdLogLikelihood, customers, [1, Math.max(1, meanAge / (meanRepeat + 1)), 1.5, 3]);
}

export function* fitGammaGammaSteps(customers: readonly Purchaser[]): Generator<void, Fit<GammaGamma>> {
  const buyers = customers.filter((c) => c.total > 0);
  const mean = buyers.reduce((s, c) => s + c.total / c.count, 0) / Math.max(1, buyers.length);
  return yield* maximumLikelihood<GammaGamma>(['p', 'q', 'gamma'], gammaGammaLogLikelihood, buyers, [2, 3, Math.max(1, mean)]);
}

export interface Ltv {
  /** What they have spent so far. */
  toDate: number;
  /** Expected spending over the horizon. */
  projected: number;
  expectedPurchases: number;
  probabilityAlive: number;
}

export function lifetimeValue(bg: BgNbd, gg: GammaGamma, c: Purchaser, horizonDays: number): Ltv {
  const n = expectedPurchases(bg, c, horizonDays);
  return { toDate: c.total, projected: n * expectedValuePerPurchase(gg, c), expectedPurchases: n, probabilityAlive: probabilityAlive(bg, c) };
}
