/**
 * A topic's funnel from the number of people standing at each stage (pure).
 *
 * `atStage[i]`: people whose dialogue stands at stage i (its highest stage reached).
 * `reached[i]`: people who reached at least stage i = Σ atStage[j] for j ≥ i (a dialogue only goes
 * up, so whoever stands at purchase has reached detail and intro too, even if they skipped a page).
 * `conversion[i]`: of those who reached stage i, the share who reached stage i + 1
 * (reached[i + 1] / reached[i]); null when nobody reached stage i, and for the last stage.
 */
export interface FunnelStage {
  stage: string;
  atStage: number;
  reached: number;
  conversionToNext: number | null;
}

export interface Funnel {
  people: number;
  stages: FunnelStage[];
  /** Of everyone in the funnel, the share who reached the last stage; null when it is empty. */
  overallConversion: number | null;
}

const ratio = (a: number, b: number) => (b === 0 ? null : Math.round((a / b) * 10_000) / 10_000);

export function computeFunnel(ladder: readonly string[], atStage: readonly number[]): Funnel {
  const reached = new Array<number>(ladder.length).fill(0);
  for (let i = ladder.length - 1, sum = 0; i >= 0; i--) reached[i] = sum += atStage[i] ?? 0;
  const stages = ladder.map((stage, i) => ({
    stage,
    atStage: atStage[i] ?? 0,
    reached: reached[i]!,
    conversionToNext: i + 1 < ladder.length ? ratio(reached[i + 1]!, reached[i]!) : null,
  }));
  const people = reached[0] ?? 0;
  return { people, stages, overallConversion: ratio(reached[ladder.length - 1] ?? 0, people) };
}
