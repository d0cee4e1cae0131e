/**
 * The snippet's pure helpers: no globals read at import time and no compile-time constants, so
 * the unit tests can import them in Node. Every byte here ships to every page, so the code is
 * terse on purpose; the contract it has to satisfy is contract/collect.ts.
 */

export type Json = Record<string, unknown>;

/** A bounded string, or undefined for null, undefined and '' (so JSON leaves the key out). */
export const cut = (x: unknown, max: number): string | undefined => ('' + (x ?? '')).slice(0, max) || undefined;

/** `x` as an id ingest will accept (contract/collect.ts `id`, with its 64-character bound), or undefined. Numbers are fine: `identify(42)`. */
export const validId = (x: unknown): string | undefined => (/^[\w.:@+-]{1,64}$/.test((x = '' + (x ?? ''))) ? (x as string) : undefined);

/**
 * 128 random bits as digits (four 32-bit numbers joined, about 38 characters). A visitor id is the
 * only proof an anonymous visitor has when it reads its own stages (GET /v1/me), so it must be
 * unguessable. `getRandomValues` works outside secure contexts, unlike randomUUID. Not base64url:
 * its encoding (btoa of the bytes, then the alphabet swapped) costs 25 bytes gzipped that the
 * budget does not have. Ids stored by older snippets (96 bits as digits) stay valid.
 */
export const rid = (): string => crypto.getRandomValues(new Uint32Array(4)).join('');

/**
 * Flat props as the contract's `Props` accepts them: at most 32 keys of at most 64 characters,
 * string values cut to 512, numbers, booleans and null kept, anything else (objects, functions)
 * left out. Keys a consumer could trip over (`constructor`, `prototype`) are dropped; a
 * `__proto__` key cannot become an own property of `r` in the first place.
 */
export const clean = (o: unknown): Json | undefined => {
  const r: Json = {};
  let n = 0;
  for (const k in o as Json) {
    const v = (o as Json)[k];
    if (n < 32 && /^(?!constructor$|prototype$).{1,64}$/.test(k) && (v === null || /^(n|bo|st)/.test(typeof v))) {
      r[k] = (v as string)?.slice?.(0, 512) ?? v;
      n++;
    }
  }
  return n ? r : undefined;
};

/**
 * Milliseconds until the next attempt after `fails` failures in a row: the server's Retry-After
 * (in seconds) when it sent one, else 1 s, 2 s, 4 s... up to a
 * minute; plus up to a second of jitter, so that a crowd of browsers does not come back in step
 * after an outage.
 */
export const retryDelay = (fails: number, retryAfter: string | null | undefined): number =>
  1e3 * ((+retryAfter! > 0 ? +retryAfter! : Math.min(2 ** fails / 2, 60)) + Math.random());

/** One element as a selector step: `tag#id`, else `tag.class1.class2`. */
const step = (el: Element): string =>
  el.localName +
  (el.id
    ? '#' + CSS.escape(el.id)
    : [...el.classList]
        .slice(0, 2)
        .map((c) => '.' + CSS.escape(c))
        .join(''));

/** A short CSS selector: the element's step, under its nearest ancestor with an id if there is one. */
export const selector = (el: Element): string => {
  const anchor = el.parentElement?.closest('[id]');
  return ((anchor ? step(anchor) + ' ' : '') + step(el)).slice(0, 256);
};

/**
 * What a click event says about its element (contract `ElementContext`). `data` holds the other
 * data-* attributes of the element and of the ancestors its topic and stage hints came from
 * (nearest wins).
 */
export const context = (el: Element, ...hinted: (Element | null)[]): Json => {
  const { topic, stage, ...data } = Object.assign({}, ...[...hinted, el].map((e) => (e as HTMLElement | null)?.dataset));
  return {
    tag: el.localName.slice(0, 32),
    id: cut(el.id, 128),
    cls: cut(el.getAttribute('class'), 256),
    text: cut(el.textContent!.trim().replace(/\s+/g, ' '), 100),
    // An SVG <a> has an SVGAnimatedString here, not a URL: it has no slice.
    href: (el as HTMLAnchorElement).href?.slice?.(0, 2048),
    sel: selector(el),
    data: clean(data),
  };
};

/**
 * The stored ids: `visitor|session|last activity|user|signature of user`. Anything malformed is
 * replaced, not sent; a signature is only cut to the contract's bound (a wrong one costs the user
 * id, never the batch).
 */
export const parseIds = (
  rec: string | null | undefined,
): [visitor: string, session: string | undefined, last: number, user: string | undefined, sig: string | undefined] => {
  const [v, s, t, u, g] = (rec || '').split('|');
  return [validId(v) || rid(), validId(s), +t! || 0, validId(u), cut(g, 128)];
};
