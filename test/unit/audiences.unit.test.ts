import { describe, expect, it } from 'vitest';
import { AudienceDefinition } from '../../contract/audience.js';
import type { RfmScores } from '../../contract/query.js';
import { AudienceError, compileAudience, isMember, nextChangeAt, type PersonFacts } from '../../history/audiences/membership.js';
import { prng } from '../support/prng.js';

const LADDER = ['intro', 'detail', 'purchase'];
const DAY = 86_400_000;
const QUIET = 30 * DAY;
const ctx = { ladder: LADDER, quietMs: QUIET, stallRules: new Set(['quiet-at-detail']) };
const NOW = Date.UTC(2026, 10, 30);

/** The issue's example: at detail of a product, not bought, active in the last 7 days, not stalled. */
const EXAMPLE = {
  all: [{ topic: 'product:*', atLeast: 'detail', notReached: 'purchase', activeWithin: '7d' }, { not: { stalled: 'quiet-at-detail' } }],
};

interface D {
  stage: number;
  last: number;
}
const facts = (
  dialogues: Record<string, D>,
  opts: { rfm?: RfmScores | null; stalled?: string[]; traits?: Record<string, string | number | boolean> } = {},
): PersonFacts => ({
  dialogues: new Map(Object.entries(dialogues)),
  rfm: opts.rfm ?? null,
  stalled: (topic, rule) => (opts.stalled ?? []).includes(`${topic}/${rule}`),
  traits: new Map(Object.entries(opts.traits ?? {})),
});

const parse = (v: unknown) => AudienceDefinition.parse(v);
const compile = (v: unknown) => compileAudience(parse(v), ctx);

function population(seed: number, n: number) {
  const r = prng(seed);
  const topics = ['product:a', 'product:b', 'plan:pro', 'campaign:x'];
  return Array.from({ length: n }, () => {
    const ds: Record<string, D> = {};
    for (const t of topics) if (r() < 0.5) ds[t] = { stage: Math.floor(r() * 3), last: NOW - Math.floor(r() * 40 * DAY) };
    const stalled = Object.keys(ds)
      .filter(() => r() < 0.2)
      .map((t) => `${t}/quiet-at-detail`);
    const rfm = r() < 0.5 ? null : { recency: 1 + Math.floor(r() * 5), frequency: 1 + Math.floor(r() * 5), monetary: 1 + Math.floor(r() * 5), code: '' };
    return { ds, stalled, rfm };
  });
}

describe('audience definitions: the grammar', () => {
  it('takes the documented example and the RFM condition', () => {
    expect(() => parse(EXAMPLE)).not.toThrow();
    expect(() => parse({ any: [{ rfm: { monetary: { atLeast: 4 } } }, { topic: 'plan:pro', exactly: 'purchase' }] })).not.toThrow();
    expect(() =>
      parse({ all: [{ trait: { name: 'company.size', in: ['51-200', 201] } }, { not: { trait: { name: 'churned', exists: true } } }] }),
    ).not.toThrow();
  });

  it.each([
    ['an unknown key', { topic: 'product:*', atleast: 'detail' }],
    ['an empty condition', {}],
    ['an empty all', { all: [] }],
    ['a bad duration', { topic: 'product:*', activeWithin: '7 days' }],
    ['a duration past the cap', { activeWithin: '99999w' }],
    ['a star inside a topic', { topic: 'product:*:specs' }],
    ['a score out of range', { rfm: { recency: { atLeast: 6 } } }],
    ['an empty range', { rfm: { recency: {} } }],
    ['a string', 'everyone'],
    ['a stage that is not a word', { atLeast: 'DETAIL!' }],
    ['a trait with no test', { trait: { name: 'plan' } }],
    ['a trait with two tests', { trait: { name: 'plan', equals: 'pro', exists: true } }],
    ['a trait with an empty in', { trait: { name: 'plan', in: [] } }],
    ['a trait value that is an object', { trait: { name: 'plan', equals: { $ne: 1 } } }],
    ['a trait value that is null', { trait: { name: 'plan', equals: null } }],
    ['a trait name no allow-list can name', { trait: { name: 'plan type', exists: true } }],
    ['__proto__ as a trait name', { trait: { name: '__proto__', exists: true } }],
    ['a trait name past the bound', { trait: { name: 'x'.repeat(63), exists: true } }],
    ['an unknown key in a trait', { trait: { name: 'plan', equals: 'pro', like: 'p%' } }],
  ])('refuses %s', (_, v) => {
    expect(AudienceDefinition.safeParse(v).success).toBe(false);
  });

  it('refuses deep nesting and too many conditions before walking them (no stack overflow)', () => {
    let deep: unknown = { topic: 'a' };
    for (let i = 0; i < 100_000; i++) deep = { not: deep };
    const r = AudienceDefinition.safeParse(deep);
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toContain('nest at most');

    const wide = { any: Array.from({ length: 65 }, (_, i) => ({ topic: `t:${i}` })) };
    expect(JSON.stringify(AudienceDefinition.safeParse(wide).error?.issues)).toContain('at most 64 conditions');
  });
});

describe('audience definitions: checked against the topic map', () => {
  it.each([
    ['an unknown stage', { atLeast: 'checkout' }, /not on the ladder/],
    ['a range with no stage in it', { atLeast: 'purchase', notReached: 'detail' }, /can never hold/],
    ['an unknown stall rule', { stalled: 'gone' }, /not a stall rule/],
    ['an inverted score range', { rfm: { frequency: { atLeast: 4, atMost: 2 } } }, /above atMost/],
  ])('refuses %s with the reason', (_, v, reason) => {
    expect(() => compile(v)).toThrow(AudienceError);
    expect(() => compile(v)).toThrow(reason);
  });
});

describe('audience membership', () => {
  const a = compile(EXAMPLE);

  it('asks all conditions of a dialogue condition of one and the same dialogue', () => {
    // Detail of product:a (not bought) and a purchase of product:b: a member, through product:a.
    expect(isMember(a, facts({ 'product:a': { stage: 1, last: NOW - DAY }, 'product:b': { stage: 2, last: NOW - DAY } }), NOW)).toBe(true);
    // Bought the product it was at detail of: not a member.
    expect(isMember(a, facts({ 'product:a': { stage: 2, last: NOW - DAY } }), NOW)).toBe(false);
    // At detail of a plan, not of a product.
    expect(isMember(a, facts({ 'plan:pro': { stage: 1, last: NOW - DAY } }), NOW)).toBe(false);
    // Active 8 days ago: outside activeWithin.
    expect(isMember(a, facts({ 'product:a': { stage: 1, last: NOW - 8 * DAY } }), NOW)).toBe(false);
    // Stalled: `not stalled` keeps them out.
    expect(isMember(a, facts({ 'product:a': { stage: 1, last: NOW - DAY } }, { stalled: ['product:a/quiet-at-detail'] }), NOW)).toBe(false);
  });

  it('matches topics as the stores hold them (normalised), exact or by prefix', () => {
    const exact = compile({ topic: 'Product:A', atLeast: 'detail' });
    expect(isMember(exact, facts({ 'product:a': { stage: 1, last: NOW } }), NOW)).toBe(true);
    expect(isMember(exact, facts({ 'product:ab': { stage: 1, last: NOW } }), NOW)).toBe(false);
    const all = compile({ exactly: 'intro' });
    expect(isMember(all, facts({ 'campaign:x': { stage: 0, last: NOW } }), NOW)).toBe(true);
  });

  it('lets a dialogue that ended (quiet longer than the quiet period) count for nothing', () => {
    const anyone = compile({ topic: '*' });
    expect(isMember(anyone, facts({ x: { stage: 0, last: NOW - QUIET } }), NOW)).toBe(true);
    expect(isMember(anyone, facts({ x: { stage: 0, last: NOW - QUIET - 1 } }), NOW)).toBe(false);
  });

  it('equals the definition computed independently, on a synthetic population at many moments', () => {
    const people = population(7, 2000);
    // The example, written out by hand as a plain predicate.
    const expected = (p: (typeof people)[number], now: number) =>
      Object.entries(p.ds).some(([t, d]) => t.startsWith('product:') && d.stage === 1 && now - d.last <= 7 * DAY && now - d.last <= QUIET) &&
      !p.stalled.some((s) => Object.hasOwn(p.ds, s.split('/')[0]!) && now - p.ds[s.split('/')[0]!]!.last <= QUIET);
    let members = 0;
    for (const now of [NOW, NOW + DAY, NOW + 5 * DAY]) {
      for (const p of people) {
        const got = isMember(a, facts(p.ds, { stalled: p.stalled }), now);
        expect(got).toBe(expected(p, now));
        if (got) members++;
      }
    }
    // The population is not degenerate: some are in, most are out.
    expect(members).toBeGreaterThan(50);
    expect(members).toBeLessThan(3000);
  });

  it('does not change between now and nextChangeAt, and does change there when time alone moves it', () => {
    const defs = [
      EXAMPLE,
      { not: { topic: 'product:*', activeWithin: '3d' } },
      { any: [{ topic: 'plan:pro', activeWithin: '12h' }, { all: [{ atLeast: 'detail' }, { not: { activeWithin: '20d' } }] }] },
    ].map(compile);
    const people = population(11, 400);
    let checked = 0;
    let changedAtNext = 0;
    for (const def of defs) {
      for (const p of people) {
        const f = facts(p.ds, { stalled: p.stalled });
        let now = NOW;
        for (let step = 0; step < 6; step++) {
          const next = nextChangeAt(def, f, now);
          if (next === null) {
            // Nothing left that time can change: the same far into the future.
            expect(isMember(def, f, now + 400 * DAY)).toBe(isMember(def, f, now));
            break;
          }
          expect(next).toBeGreaterThan(now);
          const at = isMember(def, f, now);
          for (const t of [now + 1, Math.floor((now + next) / 2), next - 1]) if (t < next) expect(isMember(def, f, t)).toBe(at);
          checked++;
          if (isMember(def, f, next) !== at) changedAtNext++;
          now = next;
        }
      }
    }
    expect(checked).toBeGreaterThan(500);
    expect(changedAtNext).toBeGreaterThan(50);
  });

  it('reads traits: equals and in by value and type, exists either way; a missing trait is no value', () => {
    const pro = facts({}, { traits: { plan: 'pro', seats: 12, trial: false } });
    const none = facts({});
    const cases: [unknown, boolean, boolean][] = [
      [{ trait: { name: 'plan', equals: 'pro' } }, true, false],
      [{ trait: { name: 'plan', equals: 'Pro' } }, false, false],
      [{ trait: { name: 'plan', in: ['team', 'pro'] } }, true, false],
      [{ trait: { name: 'seats', equals: 12 } }, true, false],
      // Typed: an imported CSV column is text unless its header says otherwise.
      [{ trait: { name: 'seats', equals: '12' } }, false, false],
      [{ trait: { name: 'trial', equals: false } }, true, false],
      [{ trait: { name: 'plan', exists: true } }, true, false],
      [{ trait: { name: 'plan', exists: false } }, false, true],
      [{ trait: { name: 'tier', exists: true } }, false, false],
      [{ not: { trait: { name: 'plan', equals: 'pro' } } }, false, true],
    ];
    for (const [def, member, memberWithout] of cases) {
      const a = compile(def);
      expect(isMember(a, pro, NOW), JSON.stringify(def)).toBe(member);
      expect(isMember(a, none, NOW), JSON.stringify(def)).toBe(memberWithout);
      // Time alone never changes what a trait says.
      expect(nextChangeAt(a, pro, NOW)).toBeNull();
    }
  });

  it('combines traits with dialogues: pro customers at detail of a product', () => {
    const a = compile({ all: [{ trait: { name: 'plan', equals: 'pro' } }, { topic: 'product:*', atLeast: 'detail' }] });
    expect(isMember(a, facts({ 'product:a': { stage: 1, last: NOW } }, { traits: { plan: 'pro' } }), NOW)).toBe(true);
    expect(isMember(a, facts({ 'product:a': { stage: 1, last: NOW } }, { traits: { plan: 'free' } }), NOW)).toBe(false);
    expect(isMember(a, facts({ 'product:a': { stage: 0, last: NOW } }, { traits: { plan: 'pro' } }), NOW)).toBe(false);
    expect(nextChangeAt(a, facts({ 'product:a': { stage: 1, last: NOW } }, { traits: { plan: 'pro' } }), NOW)).toBe(NOW + QUIET + 1);
  });

  it('reads RFM scores and adds the moment the caller says they age', () => {
    const big = compile({ all: [{ rfm: { monetary: { atLeast: 4 }, recency: { atLeast: 3 } } }, { topic: 'product:*' }] });
    const rfm = { recency: 4, frequency: 1, monetary: 5, code: '415' };
    const f = facts({ 'product:a': { stage: 0, last: NOW } }, { rfm });
    expect(isMember(big, f, NOW)).toBe(true);
    expect(isMember(big, facts({ 'product:a': { stage: 0, last: NOW } }, { rfm: { ...rfm, monetary: 3 } }), NOW)).toBe(false);
    expect(isMember(big, facts({ 'product:a': { stage: 0, last: NOW } }), NOW)).toBe(false);
    expect(nextChangeAt(big, f, NOW, NOW + DAY)).toBe(NOW + DAY);
    // A definition that does not read RFM ignores it.
    expect(nextChangeAt(compile({ topic: 'product:a' }), f, NOW, NOW + DAY)).toBe(NOW + QUIET + 1);
  });
});
