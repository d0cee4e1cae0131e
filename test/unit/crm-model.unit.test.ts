import { describe, expect, it } from 'vitest';
import { AudienceDefinition } from '../../contract/audience.js';
import { compileAudience, isMember, type PersonFacts } from '../../history/audiences/membership.js';
import { createAutomation } from '../../history/automation/evaluate.js';
import { type CrmModel, computeModel, ltvOf, MAX_FIT_PURCHASES, scoresOf } from '../../history/crm/model.js';
import { quantileScale, quantileScores } from '../../history/crm/rfm-quantiles.js';
import { decodeRfm, encodeRfm } from '../../history/fold/codec.js';
import { emptyState, type Rfm } from '../../history/fold/fold.js';
import { rfmScores } from '../../history/query/rfm.js';
import { prng } from '../support/prng.js';

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 10, 30);
const LADDER = ['intro', 'detail', 'purchase'];

function sample(seed: number, n: number): Rfm[] {
  const u = prng(seed);
  return Array.from({ length: n }, () => {
    const first = NOW - Math.floor(u() * 400) * DAY;
    const count = 1 + Math.floor(-Math.log(1 - u()) * 2);
    return { first, last: first + Math.floor(u() * (NOW - first)), count, total: Math.round(count * (5 + u() * 200) * 100) / 100 };
  });
}

const FIT: CrmModel['ltv'] = { bgNbd: { r: 0.8, alpha: 20, a: 1.6, b: 4 }, gammaGamma: { p: 6, q: 4, gamma: 15 }, n: 100, converged: true };

describe('RFM inputs keep the first purchase', () => {
  it('encodes it last, so a value written before it decodes with first = last', () => {
    const r: Rfm = { first: NOW - 90 * DAY, last: NOW - DAY, count: 3, total: 120.5 };
    expect(decodeRfm(encodeRfm(r))).toEqual(r);
    const old = `${(NOW - DAY).toString(36)}|3|120.5`;
    expect(decodeRfm(old)).toEqual({ first: NOW - DAY, last: NOW - DAY, count: 3, total: 120.5 });
  });
});

describe('the CRM model', () => {
  it('scores by the stored thresholds exactly as by the whole distribution, for every purchaser of the sample', () => {
    const s = sample(3, 500);
    const model = computeModel(s, NOW, 500);
    const scale = quantileScale(s);
    for (const r of s) expect(scoresOf(model, r, NOW)).toEqual({ scores: quantileScores(scale, r), scale: 'quantiles' });
  });

  it('keeps the fixed scale and no projection below the minimum sample', () => {
    const s = sample(4, 19);
    const model = computeModel(s, NOW, 19);
    expect(model.thresholds).toBeNull();
    expect(model.ltv).toBeNull();
    expect(scoresOf(model, s[0]!, NOW)).toEqual({ scores: rfmScores(s[0]!, NOW), scale: 'fixed' });
    expect(ltvOf(model, s[0]!, NOW, 365)).toEqual({ toDate: s[0]!.total, projected: null, horizonDays: 365, model: null });
  });

  it('leaves hostile histories out of the fit, says why, and projects nothing for them', () => {
    const s = sample(5, 200);
    const hostile: Rfm[] = [
      { first: NOW - 300 * DAY, last: NOW - DAY, count: 1_000_000, total: 3e7 },
      { first: NOW - 3 * DAY, last: NOW - 3 * DAY, count: 1, total: 1e15 },
      { first: NOW - 3 * DAY, last: NOW - 3 * DAY, count: 2, total: -40 },
      { first: NOW - 3 * DAY, last: NOW - 3 * DAY, count: 2, total: Number.NaN },
    ];
    const model = computeModel([...s, ...hostile], NOW, 204);
    expect(model.excluded).toEqual({ manyPurchases: 1, extremeValue: 1, nonPositiveValue: 1, noHistory: 1 });
    expect(model.ltv!.n).toBe(200);
    expect(computeModel(s, NOW, 200).ltv!.bgNbd).toEqual(model.ltv!.bgNbd);
    for (const h of hostile.slice(0, 3)) expect(ltvOf(model, h, NOW, 365).projected).toBeNull();
    expect(hostile[0]!.count).toBeGreaterThan(MAX_FIT_PURCHASES);
    const fine = ltvOf(model, s[0]!, NOW, 365);
    expect(fine.model).toBe('bg-nbd+gamma-gamma');
    expect(fine.projected).toBeGreaterThanOrEqual(0);
  });

  it('projects more for a frequent recent buyer than for one who bought once long ago', () => {
    const model: CrmModel = { ...computeModel([], NOW, 0), ltv: FIT, medianValue: 50 };
    const busy = ltvOf(model, { first: NOW - 200 * DAY, last: NOW - 2 * DAY, count: 12, total: 600 }, NOW, 365).projected!;
    const gone = ltvOf(model, { first: NOW - 300 * DAY, last: NOW - 300 * DAY, count: 1, total: 50 }, NOW, 365).projected!;
    expect(busy).toBeGreaterThan(gone * 5);
    expect(ltvOf(model, { first: NOW - 200 * DAY, last: NOW - 2 * DAY, count: 12, total: 600 }, NOW, 30).projected).toBeLessThan(busy);
  });
});

describe('audiences on lifetime value', () => {
  const ctx = { ladder: LADDER, quietMs: 30 * DAY, stallRules: new Set<string>() };
  const facts = (ltv: number | null): PersonFacts => ({ dialogues: new Map(), rfm: null, ltv, stalled: () => false, traits: new Map() });

  it('parses the condition, refuses an inverted or empty range, and holds on the projection only', () => {
    expect(() => AudienceDefinition.parse({ ltv: {} })).toThrow();
    expect(() => AudienceDefinition.parse({ ltv: { atLeast: 500, atMost: 100 } })).toThrow(/above atMost/);
    expect(() => AudienceDefinition.parse({ ltv: { atLeast: 100, extra: 1 } })).toThrow();
    const a = compileAudience(AudienceDefinition.parse({ ltv: { atLeast: 100, atMost: 500 } }), ctx);
    expect(isMember(a, facts(250), NOW)).toBe(true);
    expect(isMember(a, facts(99), NOW)).toBe(false);
    expect(isMember(a, facts(null), NOW)).toBe(false);
    expect(isMember(compileAudience(AudienceDefinition.parse({ not: { ltv: { atLeast: 100 } } }), ctx), facts(null), NOW)).toBe(true);
  });

  it('reads the model through a getter: a new model applies without recompiling, and RFM conditions take its quintiles', () => {
    let model: CrmModel | null = null;
    const automation = createAutomation({
      ladder: LADDER,
      quietMs: 30 * DAY,
      stallRules: [],
      audiences: [
        { name: 'valuable', compiled: compileAudience(AudienceDefinition.parse({ ltv: { atLeast: 20 } }), ctx) },
        { name: 'top-spenders', compiled: compileAudience(AudienceDefinition.parse({ rfm: { monetary: { atLeast: 5 } } }), ctx) },
      ],
      crm: () => ({ model, horizonDays: 365 }),
    });
    const state = { ...emptyState(), rfm: { first: NOW - 100 * DAY, last: NOW - 2 * DAY, count: 6, total: 300 } };
    const run = () => automation.evaluate({ person: 'p', state, memberships: new Map(), now: NOW }).memberships;
    // Fixed scale: 300 scores monetary 3; no model, no projection.
    expect([...run().keys()]).toEqual([]);
    model = {
      ...computeModel([], NOW, 0),
      thresholds: { last: [0, 1, 2, 3], count: [2, 3, 4, 5], total: [50, 100, 200, 250] },
      ltv: FIT,
      medianValue: 50,
    };
    expect([...run().keys()].sort()).toEqual(['top-spenders', 'valuable']);
    // Quintiles do not age: no time-driven re-evaluation for them.
    expect(automation.evaluate({ person: 'p', state, memberships: new Map(), now: NOW }).due).toBeNull();
  });
});
