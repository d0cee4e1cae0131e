import { describe, expect, it } from 'vitest';
import { compileStallRules, dueStalls, nextStallAt, StallRule, stallId } from '../../history/stalls/rules.js';

const LADDER = ['intro', 'detail', 'purchase'];
const DAY = 86_400_000;
const QUIET = 30 * DAY;
const T0 = Date.UTC(2026, 10, 30);

const rulesOf = (raw: unknown[]) =>
  compileStallRules(
    raw.map((r) => StallRule.parse(r)),
    LADDER,
    QUIET,
  );

describe('stall rules', () => {
  const { rules } = rulesOf([
    { name: 'quiet-at-detail', stage: 'detail', after: '3d', topics: 'product:*' },
    { name: 'checkout-left', stage: 'purchase', after: '30s' },
  ]);
  const none = () => undefined;

  it('fires when a dialogue has stood at the stage with no activity for the wait, not before', () => {
    const d = { stage: 1, last: T0 };
    expect(dueStalls(rules, 'product:a', d, T0 + 3 * DAY - 1, none)).toEqual([]);
    expect(dueStalls(rules, 'product:a', d, T0 + 3 * DAY, none)).toEqual([{ rule: 'quiet-at-detail', since: T0, at: T0 + 3 * DAY }]);
    expect(nextStallAt(rules, 'product:a', d, T0, none)).toBe(T0 + 3 * DAY);
  });

  it('applies a rule only at its stage and to its topics', () => {
    expect(dueStalls(rules, 'plan:pro', { stage: 1, last: T0 }, T0 + 10 * DAY, none)).toEqual([]);
    expect(dueStalls(rules, 'product:a', { stage: 0, last: T0 }, T0 + 10 * DAY, none)).toEqual([]);
    expect(dueStalls(rules, 'plan:pro', { stage: 2, last: T0 }, T0 + 30_000, none).map((s) => s.rule)).toEqual(['checkout-left']);
  });

  it('fires once per quiet spell, and new activity re-arms it', () => {
    const fired = new Map<string, number>();
    const firedSince = (r: string) => fired.get(r);
    let d = { stage: 1, last: T0 };
    const first = dueStalls(rules, 'product:a', d, T0 + 4 * DAY, firedSince);
    expect(first).toHaveLength(1);
    fired.set('quiet-at-detail', first[0]!.since);
    // The same spell, swept again later: nothing more.
    expect(dueStalls(rules, 'product:a', d, T0 + 5 * DAY, firedSince)).toEqual([]);
    expect(nextStallAt(rules, 'product:a', d, T0 + 5 * DAY, firedSince)).toBeNull();
    // Activity: the marker no longer matches, so the rule is armed for the new spell.
    d = { stage: 1, last: T0 + 6 * DAY };
    expect(nextStallAt(rules, 'product:a', d, T0 + 6 * DAY, firedSince)).toBe(T0 + 9 * DAY);
    expect(dueStalls(rules, 'product:a', d, T0 + 9 * DAY, firedSince)).toEqual([{ rule: 'quiet-at-detail', since: T0 + 6 * DAY, at: T0 + 9 * DAY }]);
  });

  it('gives the same event id for the same spell, another for another', () => {
    expect(stallId('p', 'product:a', 'quiet-at-detail', T0)).toBe(stallId('p', 'product:a', 'quiet-at-detail', T0));
    expect(stallId('p', 'product:a', 'quiet-at-detail', T0)).not.toBe(stallId('p', 'product:a', 'quiet-at-detail', T0 + 1));
    expect(stallId('p', 'product:a', 'quiet-at-detail', T0)).not.toBe(stallId('p', 'product:a', 'checkout-left', T0));
  });

  it('refuses rules that cannot work, with the reason', () => {
    expect(StallRule.safeParse({ name: 'x', stage: 'detail', after: '3 days' }).success).toBe(false);
    expect(StallRule.safeParse({ name: 'X Y', stage: 'detail', after: '3d' }).success).toBe(false);
    expect(StallRule.safeParse({ name: 'x', stage: 'detail', after: '3d', extra: 1 }).success).toBe(false);
    expect(rulesOf([{ name: 'x', stage: 'checkout', after: '3d' }]).problems.join()).toContain('not on the ladder');
    expect(rulesOf([{ name: 'x', stage: 'detail', after: '30d' }]).problems.join()).toContain('shorter than the quiet period');
    expect(
      rulesOf([
        { name: 'x', stage: 'detail', after: '1d' },
        { name: 'x', stage: 'intro', after: '1d' },
      ]).problems.join(),
    ).toContain('named twice');
    expect(rulesOf(Array.from({ length: 33 }, (_, i) => ({ name: `r${i}`, stage: 'intro', after: '1h' }))).problems.join()).toContain('at most 32');
  });
});
