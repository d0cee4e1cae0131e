/**
 * `npm run build:dashboard`: bundles the dashboard's browser code to dist/dashboard.js, which the
 * API serves where esbuild is not installed (a production install without dev dependencies).
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { bundleDashboard, DASHBOARD_BUNDLE } from './route.js';

const code = await bundleDashboard();
await mkdir(dirname(DASHBOARD_BUNDLE), { recursive: true });
const tmp = `${DASHBOARD_BUNDLE}.${process.pid}.tmp`;
await writeFile(tmp, code);
await rename(tmp, DASHBOARD_BUNDLE);
console.log(`dist/dashboard.js: ${code.length} bytes`);
