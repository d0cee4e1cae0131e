import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The project's root: the nearest folder at or above `moduleUrl` that holds a package.json. Built
 * files (dist/) are found from there, so a module finds them from its source folder and also from
 * a bundle written elsewhere (the benchmarks bundle their processes under node_modules/.cache).
 */
export function projectRoot(moduleUrl: string): string {
  let dir = dirname(fileURLToPath(moduleUrl));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
}

/** A file the build writes to dist/: `npm run build` makes dist/t.js and dist/dashboard.js. */
export const builtFile = (moduleUrl: string, name: string) => join(projectRoot(moduleUrl), 'dist', name);
