import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import { Hono } from 'hono';
import { builtFile } from '../lib/paths.js';

/** Where `npm run build` writes the bundled tracker snippet. */
export const SNIPPET_PATH = builtFile(import.meta.url, 't.js');
/** ...and its `stages` add-on (tracker-snippet/src/stages.ts). */
export const STAGES_ADDON_PATH = builtFile(import.meta.url, 't-stages.js');

export interface SnippetRouteOptions {
  /** The built snippet; defaults to dist/t.js. */
  path?: string;
  /** `Cache-Control` max-age in seconds. The URL is not versioned, so keep it short; the ETag makes revalidation cheap. */
  maxAgeSeconds?: number;
}

type Encoding = 'identity' | 'gzip' | 'br';

interface Prepared {
  /** Per encoding: a strong validator names one exact byte sequence. */
  etag: Record<Encoding, string>;
  body: Record<Encoding, Uint8Array>;
}

/** The encodings a client accepts (q > 0), from an Accept-Encoding header. */
export function acceptedEncodings(header: string | undefined): Set<string> {
  const out = new Set<string>();
  for (const part of (header ?? '').split(',')) {
    const [token, ...params] = part.trim().toLowerCase().split(';');
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    if (token && !(q && Number(q.slice(2)) === 0)) out.add(token);
  }
  return out;
}

/**
 * `GET /t.js`: the tracker snippet. Read and compressed once (brotli and gzip at their best
 * levels: it is tiny and served often), then answered from memory with an ETag, so a revalidating
 * browser gets a 304. While the snippet is not built yet it answers 404 and tries again next time.
 */
export function snippetRoute(opts: SnippetRouteOptions = {}): Hono {
  return builtScriptRoute('/t.js', opts.path ?? SNIPPET_PATH, opts, false);
}

/**
 * `GET /t-stages.js`: the snippet's `stages` add-on, which the snippet loads with import() the
 * first time a page asks for its stages. A module script from another origin needs CORS; anyone
 * may load it (it is public code), hence `*`.
 */
export function stagesAddonRoute(opts: SnippetRouteOptions = {}): Hono {
  return builtScriptRoute('/t-stages.js', opts.path ?? STAGES_ADDON_PATH, opts, true);
}

function builtScriptRoute(route: string, path: string, opts: SnippetRouteOptions, module: boolean): Hono {
  const cacheControl = `public, max-age=${opts.maxAgeSeconds ?? 3600}, stale-while-revalidate=86400`;
  let prepared: Promise<Prepared | null> | null = null;

  const prepare = async (): Promise<Prepared | null> => {
    const identity = await readFile(path).catch(() => null);
    if (!identity) return null;
    const hash = createHash('sha256').update(identity).digest('base64url').slice(0, 22);
    return {
      etag: { identity: `"${hash}"`, gzip: `"${hash}-gz"`, br: `"${hash}-br"` },
      body: {
        identity,
        gzip: gzipSync(identity, { level: 9 }),
        br: brotliCompressSync(identity, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }),
      },
    };
  };

  const app = new Hono();
  app.get(route, async (c) => {
    prepared ??= prepare();
    const js = await prepared;
    if (!js) {
      prepared = null;
      return c.text('// the snippet is not built: run `npm run build`\n', 404, {
        'content-type': 'text/javascript; charset=utf-8',
        'cache-control': 'no-store',
      });
    }
    const accepted = acceptedEncodings(c.req.header('accept-encoding'));
    const encoding: Encoding = accepted.has('br') ? 'br' : accepted.has('gzip') ? 'gzip' : 'identity';
    const headers: Record<string, string> = {
      'content-type': 'text/javascript; charset=utf-8',
      'cache-control': cacheControl,
      etag: js.etag[encoding],
      vary: 'Accept-Encoding',
      'x-content-type-options': 'nosniff',
      // Pages that isolate themselves (COEP require-corp) may still load it from another origin.
      'cross-origin-resource-policy': 'cross-origin',
    };
    if (module) headers['access-control-allow-origin'] = '*';
    // Any of our current tags means the client holds the current snippet (If-None-Match is a weak comparison).
    const current = Object.values(js.etag);
    const ifNoneMatch = c.req.header('if-none-match');
    if (ifNoneMatch?.split(',').some((t) => t.trim() === '*' || current.includes(t.trim().replace(/^W\//, '')))) {
      return c.body(null, 304, headers);
    }
    const bytes = js.body[encoding];
    if (encoding !== 'identity') headers['content-encoding'] = encoding;
    headers['content-length'] = String(bytes.byteLength);
    return c.body(bytes as Uint8Array<ArrayBuffer>, 200, headers);
  });
  return app;
}
