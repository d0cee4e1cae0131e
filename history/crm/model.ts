import type { RfmScores } from '../../contract/query.js';
import type { Rfm } from '../fold/fold.js';
import { DEFAULT_RFM_SCALE, rfmScores } from '../query/rfm.js';
import { type BgNbd, fitBgNbdSteps, fitGammaGammaSteps, type GammaGamma, lifetimeValue, MIN_PURCHASERS_TO_FIT, type Purchaser } from './ltv.js';
import { runSteps } from './nelder-mead.js';
import { MIN_RFM_SAMPLE, quantileScale, thresholdsOf } from './rfm-quantiles.js';

/**
 * The deployment's CRM model, pure: RFM quintile thresholds and the BG/NBD + Gamma-Gamma parameters,
 * computed from a sample of purchasers by the worker's model job (history/worker/crm-model.ts) and
 * read by the person view, the audiences and the exports. Person ids are not namespaced by site, so
 * there is one model per deployment (one store namespace), not one per site.
 */

/** Per dimension, the smallest value scoring 2, 3, 4 and 5 (null: no purchaser of the sample scores that high). */
export type Thresholds = Record<'last' | 'count' | 'total', (number | null)[]>;

export interface CrmModel {
  /** Epoch ms. */
  computedAt: number;
  /** Purchasers known to the store when it was computed. */
  purchasers: number;
  /** Purchasers sampled (their RFM inputs read). */
  n: number;
  /** Quintile thresholds; null below MIN_RFM_SAMPLE (the fixed scale applies). */
  thresholds: Thresholds | null;
  /** The lifetime-value fit; null below MIN_PURCHASERS_TO_FIT usable purchasers. */
  ltv: { bgNbd: BgNbd; gammaGamma: GammaGamma; n: number; converged: boolean } | null;
  /** The sample's median mean value per purchase: a purchaser above MAX_VALUE_RATIO times it is out of the fit. */
  medianValue: number;
  /** Purchasers left out of the fit (never of the quantiles), by reason. */
  excluded: { manyPurchases: number; extremeValue: number; nonPositiveValue: number; noHistory: number };
  /** How long the computation took, ms. */
  tookMs: number;
}

/**
 * More purchases than this is a reseller, a bot or a test account, not a customer the models
 * describe: such a history dominates the BG/NBD likelihood and makes 2F1's series crawl.
 */
export const MAX_FIT_PURCHASES = 1000;
/** A mean purchase value more than this many times the sample's median is left out of Gamma-Gamma (and BG/NBD, for one fit set). */
export const MAX_VALUE_RATIO = 1000;

const DAY = 86_400_000;

/** What ltv.ts fits on: days, from the first purchase. */
export function purchaserOf(r: Rfm, now: number): Purchaser {
  return { count: r.count, total: r.total, recency: Math.max(0, r.last - r.first) / DAY, age: Math.max(0, now - r.first) / DAY };
}

/**
 * Why a purchaser stays out of the fit, or null. `median`: the sample's median mean value per
 * purchase.
 */
export function exclusion(r: Rfm, median: number): keyof CrmModel['excluded'] | null {
  if (!(r.count >= 1) || !Number.isFinite(r.total) || !Number.isFinite(r.first) || !Number.isFinite(r.last)) return 'noHistory';
  if (r.count > MAX_FIT_PURCHASES) return 'manyPurchases';
  const mean = r.total / r.count;
  if (!(mean > 0)) return 'nonPositiveValue';
  if (median > 0 && mean > median * MAX_VALUE_RATIO) return 'extremeValue';
  return null;
}

function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = xs.slice().sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

/** Computes the model from the sampled purchasers' RFM inputs at `now` (about 2 s at 20,000: README). */
export const computeModel = (sample: readonly Rfm[], now: number, purchasers: number, clock: () => number = () => performance.now()): CrmModel =>
  runSteps(computeModelSteps(sample, now, purchasers, clock));

/** The same as steps (yielding between the fits' iterations), for the worker's job to run in slices. */
export function* computeModelSteps(
  sample: readonly Rfm[],
  now: number,
  purchasers: number,
  clock: () => number = () => performance.now(),
): Generator<void, CrmModel> {
  const t0 = clock();
  const valid = sample.filter((r) => r.count >= 1 && Number.isFinite(r.total) && Number.isFinite(r.last));
  const thresholds = valid.length >= MIN_RFM_SAMPLE ? thresholdsOf(quantileScale(valid)) : null;
  const excluded = { manyPurchases: 0, extremeValue: 0, nonPositiveValue: 0, noHistory: 0 };
  const m = median(valid.filter((r) => r.total > 0).map((r) => r.total / r.count));
  const fitSet: Purchaser[] = [];
  for (const r of sample) {
    const why = exclusion(r, m);
    if (why) excluded[why]++;
    else fitSet.push(purchaserOf(r, now));
  }
  let ltv: CrmModel['ltv'] = null;
  if (thresholds && fitSet.length >= Math.max(MIN_RFM_SAMPLE, MIN_PURCHASERS_TO_FIT)) {
    const bg = yield* fitBgNbdSteps(fitSet);
    const gg = yield* fitGammaGammaSteps(fitSet);
    // Gamma-Gamma's expected value per purchase needs q > 1; BG/NBD's expected purchases a > 1.
    if (gg.params.q > 1 && bg.params.a > 1) ltv = { bgNbd: bg.params, gammaGamma: gg.params, n: fitSet.length, converged: bg.converged && gg.converged };
  }
  return { computedAt: now, purchasers, n: sample.length, thresholds, ltv, medianValue: m, excluded, tookMs: Math.round(clock() - t0) };
}

/** 1 + how many of the thresholds `v` reaches: the quintile of `v` for every value of the sample. */
const byThresholds = (v: number, ts: readonly (number | null)[]) => 1 + ts.filter((t) => t !== null && v >= t).length;

export type RfmScaleName = 'quantiles' | 'fixed';

/** The person's RFM scores under the model's quintiles when there are some, else the fixed scale. */
export function scoresOf(model: CrmModel | null, r: Pick<Rfm, 'last' | 'count' | 'total'>, now: number): { scores: RfmScores; scale: RfmScaleName } {
  const t = model?.thresholds;
  if (!t) return { scores: rfmScores(r, now, DEFAULT_RFM_SCALE), scale: 'fixed' };
  const recency = byThresholds(r.last, t.last);
  const frequency = byThresholds(r.count, t.count);
  const monetary = byThresholds(r.total, t.total);
  return { scores: { recency, frequency, monetary, code: `${recency}${frequency}${monetary}` }, scale: 'quantiles' };
}

export const LTV_MODEL = 'bg-nbd+gamma-gamma' as const;

export interface PersonLtv {
  toDate: number;
  /** Expected spending over the horizon; null without a model, or for a purchaser outside it (see `excluded`). */
  projected: number | null;
  horizonDays: number;
  model: typeof LTV_MODEL | null;
}

/** Value to date and, with a fitted model, the projection over `horizonDays`. */
export function ltvOf(model: CrmModel | null, r: Rfm | null, now: number, horizonDays: number): PersonLtv {
  const toDate = r?.total ?? 0;
  const fit = model?.ltv;
  if (!fit) return { toDate, projected: null, horizonDays, model: null };
  if (!r || r.count < 1) return { toDate, projected: 0, horizonDays, model: LTV_MODEL };
  // A history the fit left out is outside what the model describes: no projection for it.
  if (exclusion(r, model.medianValue) !== null) return { toDate, projected: null, horizonDays, model: LTV_MODEL };
  const v = lifetimeValue(fit.bgNbd, fit.gammaGamma, purchaserOf(r, now), horizonDays).projected;
  return { toDate, projected: Number.isFinite(v) ? Math.round(v * 100) / 100 : null, horizonDays, model: LTV_MODEL };
}

export const encodeModel = (m: CrmModel): string => JSON.stringify(m);

export function decodeModel(s: string | null | undefined): CrmModel | null {
  if (!s) return null;
  try {
    return JSON.parse(s) as CrmModel;
  } catch {
    return null;
  }
}
