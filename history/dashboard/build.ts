/**
 * `npm run build:dashboard` (part of `npm run build`): bundles the dashboard's browser code
 * (client.ts and what it imports) to dist/dashboard.js, which route.ts serves. The only place the
 * dashboard is bundled: no runtime module imports esbuild.
 *
 * The bundle must stay small: client.ts imports the API's shapes with `import type` only (no zod
 * in the browser) and the funnel arithmetic from history/query/funnel.ts, which imports nothing but
 * types. One package is bundled on purpose, uPlot (MIT, about 50 KB minified) for the trend chart;
 * the build fails when any other found its way in (zod, say), and past BUNDLE_BUDGET bytes.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { DASHBOARD_BUNDLE } from './route.js';

/** The browser code's entry (plain TypeScript and the DOM, no framework). */
export const DASHBOARD_ENTRY = fileURLToPath(new URL('./client.ts', import.meta.url));
/** Minified bytes: the 24 KB ours had, plus the 52 KB uPlot takes in the bundle. */
export const BUNDLE_BUDGET = 77_000;
/** The packages the bundle may carry. */
export const BUNDLED_PACKAGES = ['uplot'];

export interface DashboardBundle {
  code: string;
  /** Every source file that went into it, relative to the project root. */
  inputs: string[];
}

/** Bundles the dashboard's script in memory. */
export async function bundleDashboard(): Promise<DashboardBundle> {
  const r = await build({
    entryPoints: [DASHBOARD_ENTRY],
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: ['es2020'],
    minify: true,
    legalComments: 'none',
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  return { code: r.outputFiles[0]!.text, inputs: Object.keys(r.metafile.inputs) };
}

/** Why a bundle is not fit to ship, or null. */
export function bundleProblem(b: DashboardBundle): string | null {
  const heavy = b.inputs.filter((f) => f.includes('node_modules/') && !BUNDLED_PACKAGES.some((p) => f.includes(`node_modules/${p}/`)));
  if (heavy.length)
    return `the dashboard bundle pulls in packages (${heavy.slice(0, 3).join(', ')}…): import their types with \`import type\`, or add the package to BUNDLED_PACKAGES if it is meant to ship`;
  if (b.code.length > BUNDLE_BUDGET) return `the dashboard bundle is ${b.code.length} bytes, over its budget of ${BUNDLE_BUDGET}`;
  return null;
}

async function main(): Promise<void> {
  const b = await bundleDashboard();
  const problem = bundleProblem(b);
  if (problem) throw new Error(problem);
  await mkdir(dirname(DASHBOARD_BUNDLE), { recursive: true });
  const tmp = `${DASHBOARD_BUNDLE}.${process.pid}.tmp`;
  await writeFile(tmp, b.code);
  await rename(tmp, DASHBOARD_BUNDLE);
  console.log(`dist/dashboard.js: ${b.code.length} bytes (budget ${BUNDLE_BUDGET})`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
