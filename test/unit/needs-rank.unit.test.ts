import { describe, expect, it } from 'vitest';
import { NEED_HALF_LIFE_MS, needScore, rankNeeds, weightedInteractions, type NeedCandidate } from '../../history/query/needs-rank.js';

const NOW = Date.UTC(2026, 5, 10, 12);
const HOUR = 3_600_000;
const c = (person: string, hoursAgo: number, counts: number[]): NeedCandidate => ({ person, last: NOW - hoursAgo * HOUR, counts });

describe('needs ranking (recency × intensity)', () => {
  it('weights interactions by how far along the ladder they are', () => {
    expect(weightedInteractions([3, 2, 0])).toBe(3 * 1 + 2 * 2);
    expect(weightedInteractions([0, 0, 1])).toBe(3);
    expect(weightedInteractions([])).toBe(0);
  });

  it('halves the score every half-life without activity', () => {
    const fresh = needScore(c('a', 0, [1, 1, 0]), NOW);
    const old = needScore(c('a', NEED_HALF_LIFE_MS / HOUR, [1, 1, 0]), NOW);
    expect(fresh.recency).toBe(1);
    expect(old.recency).toBeCloseTo(0.5, 10);
    expect(old.score).toBeCloseTo(fresh.score / 2, 10);
    expect(fresh.intensity).toBe(2); // log2(1 + 1 + 2)
    // An activity "in the future" (client clocks) is not clamped to now: a clamp would make the order
    // change as time passes, which an index written at fold time cannot follow.
    expect(needScore(c('a', -5, [1, 0, 0]), NOW).recency).toBeGreaterThan(1);
  });

  it('ranks the more recent first at equal intensity, the more intense first at equal recency', () => {
    const ranked = rankNeeds([c('old', 48, [1, 2, 0]), c('new', 1, [1, 2, 0]), c('keen', 1, [4, 6, 0]), c('light', 1, [1, 0, 0])], NOW);
    expect(ranked.map((r) => r.person)).toEqual(['keen', 'new', 'old', 'light']);
  });

  it('lets a recent light interest outrank an old intense one, with diminishing returns on intensity', () => {
    // The module's own example: an hour ago with 2 detail views beats 4 days ago with 10 detail views.
    const ranked = rankNeeds([c('intense-but-old', 96, [0, 10, 0]), c('recent', 1, [0, 2, 0])], NOW);
    expect(ranked.map((r) => r.person)).toEqual(['recent', 'intense-but-old']);
    expect(ranked[0]!.score).toBeCloseTo(2.3, 1);
    expect(ranked[1]!.score).toBeCloseTo(1.74, 1);
  });

  it('is a total order: ties go to the more intense, then to the larger id (the index order); the input is not changed', () => {
    const input = [c('b', 2, [1, 0, 0]), c('a', 2, [1, 0, 0]), c('z', 0, [0, 0, 0]), c('y', 0, [0, 0, 0])];
    const copy = structuredClone(input);
    const ranked = rankNeeds(input, NOW);
    // No interaction counts as one (a dialogue has had one): z and y, just now, first.
    expect(ranked.map((r) => r.person)).toEqual(['z', 'y', 'b', 'a']);
    expect(input).toEqual(copy);
    expect(rankNeeds([...input].reverse(), NOW).map((r) => r.person)).toEqual(['z', 'y', 'b', 'a']);
  });

  it('saturates intensity at 4095 weighted interactions (log2 4096 = 12)', () => {
    expect(needScore(c('a', 0, [5000, 0, 0]), NOW).intensity).toBe(12);
    expect(needScore(c('a', 0, [0, 0, 1365]), NOW).intensity).toBe(12);
  });

  it('depends only on its input: the same candidates and time give the same order and scores', () => {
    const many = Array.from({ length: 200 }, (_, i) => c(`p${i}`, (i * 7) % 50, [(i * 3) % 5, (i * 5) % 4, 0]));
    expect(rankNeeds(many, NOW)).toEqual(rankNeeds([...many].reverse(), NOW));
  });
});
