import type { FunnelFigures, FunnelStage } from '../../contract/query.js';

/**
 * A topic's funnel from the number of people standing at each stage (pure): the one place that
 * computes the figures the API answers with (`GET /v1/topics/{topic}/funnel`) and the dashboard
 * shows for every topic.
 *
 * `atStage[i]`: people whose dialogue stands at stage i (its highest stage reached).
 * `reached[i]`: people who reached at least stage i = Σ atStage[j] for j ≥ i (a dialogue only goes
 * up, so whoever stands at purchase has reached detail and intro too, even if they skipped a page).
 * `conversion[i]`: of those who reached stage i, the share who reached stage i + 1
 * (reached[i + 1] / reached[i]); null when nobody reached stage i, and for the last stage.
 * `overallConversion`: of everyone in the funnel, the share who reached the last stage; null when
 * it is empty. Ratios are rounded to 4 decimals.
 *
 * Also bundled into the dashboard's browser code (history/dashboard/figures.ts): keep this file
 * free of imports other than `import type`.
 */
export type Funnel = FunnelFigures;
export type { FunnelStage };

const ratio = (a: number, b: number) => (b === 0 ? null : Math.round((a / b) * 10_000) / 10_000);

export function computeFunnel(ladder: readonly string[], atStage: readonly number[]): Funnel {
  const reached = new Array<number>(ladder.length).fill(0);
  for (let i = ladder.length - 1, sum = 0; i >= 0; i--) reached[i] = sum += atStage[i] ?? 0;
  const stages = ladder.map(
    (stage, i): FunnelStage => ({
      stage,
      atStage: atStage[i] ?? 0,
      reached: reached[i]!,
      conversionToNext: i + 1 < ladder.length ? ratio(reached[i + 1]!, reached[i]!) : null,
    }),
  );
  const people = reached[0] ?? 0;
  return { people, stages, overallConversion: ratio(reached[ladder.length - 1] ?? 0, people) };
}
