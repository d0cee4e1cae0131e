import type { CrmModelView, Person, PersonHistory } from '../../contract/query.js';
import { MIN_PURCHASERS_TO_FIT } from '../crm/ltv.js';
import { type CrmModel, LTV_MODEL, ltvOf, scoresOf } from '../crm/model.js';
import { MIN_RFM_SAMPLE } from '../crm/rfm-quantiles.js';
import type { Rfm } from '../fold/fold.js';

/** The default horizon of projected lifetime value (CRM_LTV_HORIZON_DAYS), days. */
export const DEFAULT_LTV_HORIZON_DAYS = 365;

const iso = (t: number) => new Date(t).toISOString();

/** The fold's RFM inputs back from the API's shape. */
export function rfmOf(r: NonNullable<PersonHistory['rfm']>): Rfm {
  return { first: Date.parse(r.firstPurchase), last: Date.parse(r.lastPurchase), count: r.purchases, total: r.totalValue };
}

/** What the person view derives from the model: the RFM scores, the scale they are on, lifetime value. */
export function personCrm(model: CrmModel | null, history: PersonHistory, now: number, horizonDays: number): Pick<Person, 'rfmScores' | 'rfmScale' | 'ltv'> {
  const rfm = history.rfm ? rfmOf(history.rfm) : null;
  const scored = rfm ? scoresOf(model, rfm, now) : null;
  return {
    rfmScores: scored?.scores ?? null,
    rfmScale: model?.thresholds ? 'quantiles' : 'fixed',
    ltv: ltvOf(model, rfm, now, horizonDays),
  };
}

export function crmModelView(model: CrmModel | null, horizonDays: number, everySeconds: number | null): CrmModelView {
  const t = model?.thresholds ?? null;
  const fit = model?.ltv ?? null;
  return {
    rfmScale: t ? 'quantiles' : 'fixed',
    thresholds: t ? { lastPurchase: t.last.map((x) => (x === null ? null : iso(x))), purchases: t.count, totalValue: t.total } : null,
    ltv: fit ? { model: LTV_MODEL, bgNbd: fit.bgNbd, gammaGamma: fit.gammaGamma, n: fit.n, converged: fit.converged } : null,
    horizonDays,
    n: model?.n ?? 0,
    purchasers: model?.purchasers ?? 0,
    minSample: MIN_RFM_SAMPLE,
    minFit: Math.max(MIN_RFM_SAMPLE, MIN_PURCHASERS_TO_FIT),
    excluded: model?.excluded ?? {},
    computedAt: model ? iso(model.computedAt) : null,
    tookMs: model?.tookMs ?? null,
    everySeconds,
  };
}
