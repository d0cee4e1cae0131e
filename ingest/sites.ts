import { readFile } from 'node:fs/promises';
import { findNodeAtLocation, parseTree, printParseErrorCode, type ParseError } from 'jsonc-parser';
import { z } from 'zod';
import { userVerifier, type UserVerifier } from './identity.js';
import { addressKey, tokenBuckets, type TakeToken } from './rate-limit.js';
import { compilePrivacy, PrivacyConfig, type PrivacyPolicy } from './scrub.js';

/**
 * Sites: who may send events, from where, how fast, and what happens to bots. One JSON file
 * (`INGEST_SITES`), validated at start; a bad file stops the process with the file, line and reason.
 *
 * ```json
 * {"sites": [{"id": "shop", "origins": ["https://shop.example", "https://*.shop.example"],
 *   "writeKeys": ["wk_live_0123456789"], "bots": "drop",
 *   "limits": {"site": {"perSecond": 2000}, "address": {"perSecond": 20, "burst": 60}},
 *   "redirectHosts": ["shop.example", "*.shop.example"], "topicMap": "maps/shop.json",
 *   "identitySecret": "a long random string shared with the site's server",
 *   "privacy": {"queryParams": ["utm_*", "variant"], "traits": ["plan"]}}]}
 * ```
 */
const ORIGIN = /^https?:\/\/(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*(:\d{1,5})?$/i;
const HOST = /^(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*$/i;

const Rate = z
  .object({
    /** Requests per second, sustained. */
    perSecond: z.number().positive().max(1_000_000),
    /** Requests allowed at once; default: two seconds' worth. */
    burst: z.number().int().positive().max(10_000_000).optional(),
  })
  .strict();

export const SiteConfig = z
  .object({
    /** The `site` of the snippet's batches; the `site` prop of e-mail links. */
    id: z
      .string()
      .min(1)
      .max(64)
      .regex(/^[\w.:@+-]+$/, 'only letters, digits and . _ : @ + -'),
    /** Browser origins allowed on /v1/collect: `*`, `https://shop.example`, `https://*.shop.example`. */
    origins: z
      .array(z.string().refine((o) => o === '*' || ORIGIN.test(o), 'an origin is "*" or scheme://host[:port], optionally with *. before the host'))
      .max(200)
      .default([]),
    /** Segment write keys of this site (HTTP basic auth user name on /v1/batch, /v1/track...). */
    writeKeys: z.array(z.string().min(8, 'a write key has at least 8 characters').max(256)).max(50).default([]),
    /** Events from a user agent isbot recognises: `flag` keeps them with bot: true, `drop` drops them. */
    bots: z.enum(['drop', 'flag']).default('flag'),
    /** Rate limits per site and per client address of the site; omitted: unlimited. */
    limits: z.object({ site: Rate.optional(), address: Rate.optional() }).strict().default({}),
    /** Hosts an e-mail click may redirect to without a signature: `shop.example`, `*.shop.example`. */
    redirectHosts: z.array(z.string().regex(HOST, 'a host name, optionally with *. in front')).max(200).default([]),
    /** A topic-map file for this site (read by the history worker). */
    topicMap: z.string().min(1).optional(),
    /**
     * Signed identify (ingest/identity.ts): with it, a user id from a browser names the person
     * only with `sig` = hex HMAC-SHA256(identitySecret, user id) from the site's own server.
     */
    identitySecret: z.string().min(16, 'an identity secret has at least 16 characters').max(512).optional(),
    /** What this site keeps beyond privacy by default (ingest/scrub.ts): each field an explicit opt-in. */
    privacy: PrivacyConfig.default(PrivacyConfig.parse({})),
  })
  .strict();
export type SiteConfig = z.infer<typeof SiteConfig>;

export const SitesFile = z
  .object({ sites: z.array(SiteConfig).min(1).max(10_000) })
  .strict()
  .superRefine((f, ctx) => {
    const ids = new Set<string>();
    const keys = new Set<string>();
    f.sites.forEach((s, i) => {
      if (ids.has(s.id)) ctx.addIssue({ code: 'custom', path: ['sites', i, 'id'], message: `site "${s.id}" is defined twice` });
      ids.add(s.id);
      s.writeKeys.forEach((k, j) => {
        if (keys.has(k)) ctx.addIssue({ code: 'custom', path: ['sites', i, 'writeKeys', j], message: 'this write key belongs to another site too' });
        keys.add(k);
      });
    });
  });
export type SitesFile = z.infer<typeof SitesFile>;

/**
 * Without a sites file: the `demo` site, any origin, write key `demo-write-key`, no limits,
 * redirects to localhost only. Right for `npm start` and tests, not for a public deployment.
 */
export const DEMO_SITES: SitesFile = SitesFile.parse({
  sites: [{ id: 'demo', origins: ['*'], writeKeys: ['demo-write-key'], bots: 'flag', redirectHosts: ['localhost', '127.0.0.1'] }],
});

export interface Site {
  readonly id: string;
  readonly bots: 'drop' | 'flag';
  allowsOrigin(origin: string): boolean;
  allowsRedirectHost(host: string): boolean;
  /**
   * 0 when the request may go on, else the seconds to wait. The address's bucket first: only a
   * request it lets through takes from the site's, so one address cannot spend the site's budget.
   */
  limit(address: string | undefined): number;
  /** With an identitySecret: whether `sig` signs `user`. Null: the site does not sign user ids. */
  readonly verifyUser: UserVerifier | null;
  /** What its records keep (ingest/scrub.ts); the default keeps what stages need and no more. */
  readonly privacy: PrivacyPolicy;
}

export interface SiteRegistry {
  byId(id: string): Site | undefined;
  byWriteKey(key: string): Site | undefined;
  /** For CORS preflights, which do not say their site: whether any site allows the origin. */
  anyAllowsOrigin(origin: string): boolean;
}

/** A matcher for exact names and `*.` suffix patterns, compiled once. */
function nameMatcher(patterns: string[], wildcard: (p: string) => { prefix: string; suffix: string } | null) {
  const exact = new Set<string>();
  const suffixes: { prefix: string; suffix: string }[] = [];
  let any = false;
  for (const p of patterns.map((x) => x.toLowerCase())) {
    if (p === '*') any = true;
    const w = wildcard(p);
    if (w) suffixes.push(w);
    else exact.add(p);
  }
  return (value: string): boolean => {
    if (any) return true;
    const v = value.toLowerCase();
    return exact.has(v) || suffixes.some((s) => v.startsWith(s.prefix) && v.endsWith(s.suffix) && v.length > s.prefix.length + s.suffix.length);
  };
}

export function compileSites(file: SitesFile, now: () => number = Date.now): SiteRegistry {
  const byId = new Map<string, Site>();
  const byKey = new Map<string, Site>();
  const sites: Site[] = file.sites.map((s) => {
    // `https://*.shop.example:8443` → prefix `https://`, suffix `.shop.example:8443`
    const allowsOrigin = nameMatcher(s.origins, (p) => {
      const m = /^(https?:\/\/)\*(\..+)$/.exec(p);
      return m ? { prefix: m[1]!, suffix: m[2]! } : null;
    });
    const allowsRedirectHost = nameMatcher(s.redirectHosts, (p) => (p.startsWith('*.') ? { prefix: '', suffix: p.slice(1) } : null));
    const siteBucket: TakeToken | null = s.limits.site ? tokenBuckets({ ...s.limits.site, now, maxKeys: 1 }) : null;
    const addressBuckets: TakeToken | null = s.limits.address ? tokenBuckets({ ...s.limits.address, now }) : null;
    const site: Site = {
      id: s.id,
      bots: s.bots,
      allowsOrigin,
      allowsRedirectHost,
      limit: (address) => addressBuckets?.(addressKey(address)) || siteBucket?.(s.id) || 0,
      verifyUser: s.identitySecret === undefined ? null : userVerifier(s.identitySecret),
      privacy: compilePrivacy(s.privacy),
    };
    byId.set(s.id, site);
    for (const k of s.writeKeys) byKey.set(k, site);
    return site;
  });
  return {
    byId: (id) => byId.get(id),
    byWriteKey: (key) => byKey.get(key),
    anyAllowsOrigin: (origin) => sites.some((s) => s.allowsOrigin(origin)),
  };
}

export async function loadSites(path: string | undefined): Promise<SitesFile> {
  if (!path) return DEMO_SITES;
  return parseSites(await readFile(path, 'utf8'), path);
}

/** Parses a sites file; errors name the file, the line and the reason. */
export function parseSites(text: string, file = '<sites>'): SitesFile {
  const errors: ParseError[] = [];
  const tree = parseTree(text, errors, { allowTrailingComma: false, disallowComments: true });
  if (errors.length > 0 || !tree) {
    const e = errors[0];
    throw new Error(`${file}:${e ? lineAt(text, e.offset) : 1}: not valid JSON: ${e ? printParseErrorCode(e.error) : 'empty'}`);
  }
  const r = SitesFile.safeParse(JSON.parse(text));
  if (r.success) return r.data;
  throw new Error(
    r.error.issues
      .map((i) => {
        const path = i.path.filter((k): k is string | number => typeof k !== 'symbol');
        let node = findNodeAtLocation(tree, path);
        for (let n = path.length - 1; !node && n >= 0; n--) node = findNodeAtLocation(tree, path.slice(0, n));
        return `${file}:${lineAt(text, node?.offset ?? 0)}: ${path.join('.') || '(top)'}: ${i.message}`;
      })
      .join('\n'),
  );
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}
