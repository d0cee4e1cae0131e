import { z } from 'zod';
import { TRAIT_LIMITS, type RawEvent } from '../contract/raw-event.js';

/**
 * Privacy by default: what ingest removes from every event before it becomes a `clicks.raw` record
 * (ingest/raw.ts calls `scrubEvent` for every channel) and from every dead-letter excerpt
 * (ingest/sink.ts). A stage needs a URL's path, an event's name and a few properties; nothing here
 * keeps more than that unless the site opts in, field by field (`privacy` in the sites file).
 *
 * - URLs and referrers lose their fragment, their user:password@, and every query parameter but the
 *   allow-listed ones (default `utm_*`); e-mail addresses and long tokens in their paths are masked.
 * - Link targets that are not http(s) (`mailto:`, `tel:`, `javascript:`, `sms:`...) are dropped.
 * - Collected text (page titles, element text) has e-mail addresses, phone-number-like digit runs
 *   and long tokens masked; element ids, classes and selectors e-mail addresses and tokens; event
 *   names and topic hints e-mail addresses.
 * - Properties whose key names a personal field (email, name, phone, address, birthday...) are
 *   dropped, e-mail addresses in the other values masked; identify traits are dropped unless the
 *   site allow-lists them.
 */

export const MASK = { email: '[email]', phone: '[phone]', token: '[token]' } as const;

/** A local part, `@` (or `%40`, as it stands in a URL), a domain with a dot. */
const EMAIL = /[\w.%+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g;
/**
 * A digit run that could be a phone number: an optional `+`, digits with spaces, dots, dashes,
 * slashes or parentheses between them, at least 8 digits in all (a card number or an IBAN's digits
 * too). Not inside a word: `sku12345678` is an id, not a number.
 */
const PHONE = /(?<![\w+])\+?\(?\d[\d ()./-]{5,}\d(?![\w])/g;
const PHONE_DIGITS = 8;
/** 24 or more letters, digits and underscores with at least one of each: session ids, API keys, reset-link tokens, JWT parts. */
const TOKEN_RUN = /[A-Za-z0-9_]{24,}/g;

export function maskEmails(s: string): string {
  return s.includes('@') || s.includes('%40') ? s.replace(EMAIL, MASK.email) : s;
}

export function maskTokens(s: string): string {
  return s.length < 24 ? s : s.replace(TOKEN_RUN, (run) => (/\d/.test(run) && /[A-Za-z]/.test(run) ? MASK.token : run));
}

export function maskPhones(s: string): string {
  return s.length < PHONE_DIGITS ? s : s.replace(PHONE, (run) => (run.replace(/\D/g, '').length >= PHONE_DIGITS ? MASK.phone : run));
}

/** Free text a page shows (titles, element text): every mask. E-mails first: their digits are no phone. */
export function maskText(s: string): string {
  return maskPhones(maskTokens(maskEmails(s)));
}

/** What the DOM names things by (ids, classes, selectors): e-mails and tokens; a number there is a design choice. */
const maskIdent = (s: string) => maskTokens(maskEmails(s));

// --- the sites file's `privacy` ------------------------------------------------------------------

/** A query parameter name, or a prefix followed by `*` (`utm_*`). */
const ParamPattern = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[\w.[\]-]+\*?$/, 'a parameter name of letters, digits and _ . - [ ], optionally ending in * (a prefix)');
/** A flattened property key (`plan`, `address.city`), `*` standing for one segment (`products.*.name`). */
const KeyPattern = z
  .string()
  .min(1)
  .max(128)
  .regex(/^(\*|[\w-]+)(\.(\*|[\w-]+))*$/, 'a property key: segments of letters, digits, _ and - joined by dots, * for any one segment');

/**
 * What a site keeps beyond the default (nothing of it is needed for stages). Every field is an
 * explicit opt-in of one kind of data; the README's Privacy section says what each adds.
 */
export const PrivacyConfig = z
  .object({
    /** Query parameters kept on URLs and referrers (their values still masked). Default: `utm_*`. */
    queryParams: z.array(ParamPattern).max(100).default(['utm_*']),
    /** Keeps URL fragments (hash routers: `/#/products/sku-1`), masked like text. Default: dropped. */
    keepFragment: z.boolean().default(false),
    /** Keeps long tokens in URL paths (product ids that look like one). Default: masked. */
    keepPathTokens: z.boolean().default(false),
    /** Properties (and data-* attributes) kept as sent although their key looks personal: `plan`, `products.*.name`. */
    props: z.array(KeyPattern).max(200).default([]),
    /**
     * identify traits kept (as sent), on the record and on the person (at most 32 there too, so a
     * longer list could only name traits that crowd each other out). Default: none.
     */
    traits: z.array(KeyPattern).max(TRAIT_LIMITS.count).default([]),
  })
  .strict();
export type PrivacyConfig = z.infer<typeof PrivacyConfig>;

export interface PrivacyPolicy {
  keepParam(name: string): boolean;
  readonly keepFragment: boolean;
  readonly keepPathTokens: boolean;
  /** A property key the site allow-listed: kept as sent. */
  allowsProp(key: string): boolean;
  allowsTrait(key: string): boolean;
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Keys matching a pattern or lying under one (`address` allows `address.city`). */
function keyMatcher(patterns: readonly string[]): (key: string) => boolean {
  if (patterns.length === 0) return () => false;
  const re = new RegExp(
    `^(?:${patterns
      .map((p) =>
        p
          .split('.')
          .map((s) => (s === '*' ? '[^.]+' : escapeRe(s)))
          .join('\\.'),
      )
      .join('|')})(?:\\..*)?$`,
  );
  return (key) => re.test(key);
}

export function compilePrivacy(c: PrivacyConfig): PrivacyPolicy {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  for (const p of c.queryParams.map((x) => x.toLowerCase())) {
    if (p.endsWith('*')) prefixes.push(p.slice(0, -1));
    else exact.add(p);
  }
  return {
    keepParam: (name) => {
      const n = name.toLowerCase();
      return exact.has(n) || prefixes.some((p) => n.startsWith(p));
    },
    keepFragment: c.keepFragment,
    keepPathTokens: c.keepPathTokens,
    allowsProp: keyMatcher(c.props),
    allowsTrait: keyMatcher(c.traits),
  };
}

export const DEFAULT_PRIVACY: PrivacyPolicy = compilePrivacy(PrivacyConfig.parse({}));

// --- URLs ----------------------------------------------------------------------------------------

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;
const USERINFO = /^((?:[A-Za-z][A-Za-z0-9+.-]*:)?\/\/)[^/?#]*@/;
/** `https://host:port` or `//host`: what comes before the path (no masks there: a host is no one's). */
const ORIGIN = /^(?:[A-Za-z][A-Za-z0-9+.-]*:)?\/\/[^/]*/;

/** decodeURIComponent that never throws. */
function decode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

/** A kept query value, masked; re-encoded only when masking changed it. */
function maskParamValue(value: string): string {
  const decoded = decode(value);
  const masked = maskText(decoded);
  return masked === decoded ? value : encodeURIComponent(masked);
}

/**
 * A URL as a record may keep it, or undefined for a target that is not http(s) (`mailto:`, `tel:`,
 * `javascript:`). Relative URLs (server-side channels send paths) stay relative. The parts kept stay
 * as they were written (no re-encoding), so the topic map reads the same path.
 */
export function scrubUrl(url: string, p: PrivacyPolicy = DEFAULT_PRIVACY): string | undefined {
  const scheme = SCHEME.exec(url)?.[1]?.toLowerCase();
  if (scheme !== undefined && scheme !== 'http' && scheme !== 'https') return undefined;
  const hash = url.indexOf('#');
  const beforeHash = hash < 0 ? url : url.slice(0, hash);
  const q = beforeHash.indexOf('?');
  const base = (q < 0 ? beforeHash : beforeHash.slice(0, q)).replace(USERINFO, '$1');
  const origin = ORIGIN.exec(base)?.[0] ?? '';
  const path = maskEmails(base.slice(origin.length));
  let out = origin + (p.keepPathTokens ? path : maskTokens(path));
  if (q >= 0) {
    const kept = beforeHash
      .slice(q + 1)
      .split('&')
      .filter((pair) => pair !== '' && p.keepParam(decode(pair.split('=', 1)[0]!)))
      .map((pair) => {
        const eq = pair.indexOf('=');
        return eq < 0 ? pair : `${pair.slice(0, eq + 1)}${maskParamValue(pair.slice(eq + 1))}`;
      });
    if (kept.length > 0) out += `?${kept.join('&')}`;
  }
  if (hash >= 0 && p.keepFragment) out += `#${maskText(url.slice(hash + 1))}`;
  return out;
}

// --- properties and traits -----------------------------------------------------------------------

/** Property keys (one segment of a flattened key, lower case, without _ - and spaces) that name a personal field. */
const PERSONAL_KEYS: ReadonlySet<string> = new Set([
  'name',
  'email',
  'mail',
  'phone',
  'mobile',
  'tel',
  'telephone',
  'fax',
  'address',
  'street',
  'zip',
  'zipcode',
  'postcode',
  'postalcode',
  'birthday',
  'birthdate',
  'dateofbirth',
  'dob',
  'age',
  'gender',
  'sex',
  'ssn',
  'taxid',
  'vatid',
  'passport',
  'ip',
  'password',
  'passwd',
  'pwd',
  'iban',
  'cvv',
  'cvc',
  'creditcard',
  'cardnumber',
  'avatar',
  'latitude',
  'longitude',
  'lat',
  'lng',
]);
/** Endings that make a key personal whatever comes before: `billingAddress`, `customer_email`, `accessToken`. */
const PERSONAL_ENDINGS = ['email', 'mail', 'phone', 'phonenumber', 'address', 'birthday', 'birthdate', 'password', 'token', 'secret'];
/** What comes before `name` when it is a person's: `firstName`, `customer_name` (not `productName`). */
const PERSON_NAME =
  /^(first|last|full|given|family|middle|sur|user|nick|display|real|legal|maiden|customer|contact|recipient|billing|shipping|account|member|sender|buyer|owner|holder|cardholder|person|client|guest|patient|employee|agent)name$/;

/** Whether a flattened property key names personal data in any of its segments (`address.city`, `contact.email`). */
export function isPersonalKey(key: string): boolean {
  for (const segment of key.split('.')) {
    const k = segment.toLowerCase().replace(/[\s_-]/g, '');
    if (PERSONAL_KEYS.has(k) || PERSON_NAME.test(k) || PERSONAL_ENDINGS.some((e) => k.endsWith(e))) return true;
  }
  return false;
}

type Props = NonNullable<RawEvent['props']>;

/**
 * Properties as a record keeps them. `props`: personal-looking keys dropped unless allow-listed,
 * e-mail addresses masked in the other values (an id that looks like a token or a number stays: the
 * topic map may build a topic from it). `traits` (an identify's): only the allow-listed ones.
 * Allow-listed keys are kept as sent: the site asked for exactly them.
 */
export function scrubProps(props: Props | undefined, p: PrivacyPolicy, kind: 'props' | 'traits'): Props | undefined {
  if (!props) return undefined;
  const out: Props = {};
  let n = 0;
  for (const [k, v] of Object.entries(props)) {
    if (k === '_dropped') {
      out[k] = v;
      continue;
    }
    if (kind === 'traits' ? p.allowsTrait(k) : p.allowsProp(k)) out[k] = v;
    else if (kind === 'traits' || isPersonalKey(k)) continue;
    else out[k] = typeof v === 'string' ? maskEmails(v) : v;
    n++;
  }
  // `_dropped` (flattenProps's count of properties past the limit) says nothing on its own.
  return n > 0 ? out : undefined;
}

// --- events --------------------------------------------------------------------------------------

type Element = NonNullable<RawEvent['el']>;

function scrubElement(el: Element, p: PrivacyPolicy): Element {
  const out: Element = { tag: el.tag };
  if (el.id !== undefined) out.id = maskIdent(el.id);
  if (el.cls !== undefined) out.cls = maskIdent(el.cls);
  if (el.text !== undefined) out.text = maskText(el.text);
  const href = el.href === undefined ? undefined : scrubUrl(el.href, p);
  if (href !== undefined) out.href = href;
  if (el.sel !== undefined) out.sel = maskIdent(el.sel);
  const data = scrubProps(el.data, p, 'props');
  if (data !== undefined) out.data = data;
  return out;
}

/** The fields of an event that can carry what a stage does not need. */
export type Scrubbable = Pick<RawEvent, 'type'> & Partial<Pick<RawEvent, 'url' | 'ref' | 'title' | 'name' | 'topic' | 'el' | 'props'>>;

/** The scrubbable fields of an event as a record may keep them (see the top of this file). */
export function scrubEvent(e: Scrubbable, p: PrivacyPolicy = DEFAULT_PRIVACY): Omit<Scrubbable, 'type'> {
  return {
    url: e.url === undefined ? undefined : scrubUrl(e.url, p),
    ref: e.ref === undefined ? undefined : scrubUrl(e.ref, p),
    title: e.title === undefined ? undefined : maskText(e.title),
    name: e.name === undefined ? undefined : maskEmails(e.name),
    topic: e.topic === undefined ? undefined : maskEmails(e.topic),
    el: e.el === undefined ? undefined : scrubElement(e.el, p),
    // An identify's properties are the person's traits.
    props: scrubProps(e.props, p, e.type === 'identify' ? 'traits' : 'props'),
  };
}

// --- dead-letter excerpts ------------------------------------------------------------------------

const URL_IN_TEXT = /\b(?:https?|mailto|tel|sms|javascript):[^\s"'<>\\]*/gi;
/** `"key": ` in JSON text, for a key that may name personal data. */
const JSON_KEY = /"((?:[^"\\]|\\.){1,64})"\s*:\s*/g;
/** `key=value` in a query string or form body. */
const FORM_PAIR = /(^|[?&\s])([^=&\s?]{1,64})=([^&\s"]*)/g;

/** Where the JSON value starting at `i` ends (exclusive); the end of the text when it is cut short. */
function jsonValueEnd(s: string, i: number): number {
  let depth = 0;
  let inString = false;
  for (let j = i; j < s.length; j++) {
    const c = s[j];
    if (inString) {
      if (c === '\\') j++;
      else if (c === '"') {
        inString = false;
        if (depth === 0) return j + 1;
      }
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      if (depth === 0) return j;
      if (--depth === 0) return j + 1;
    } else if (depth === 0 && (c === ',' || c === ' ' || c === '\n')) return j;
  }
  return s.length;
}

/**
 * An excerpt of refused input (a body, an event, a URL) without the personal data a record would
 * not keep either: values of personal-looking keys (JSON or form fields) redacted whatever their
 * shape, URLs scrubbed as above (other schemes reduced to the scheme), then every text mask. The
 * excerpt is text and may be cut anywhere, so this works on text, not on parsed JSON.
 */
export function scrubExcerpt(text: string): string {
  let s = '';
  let last = 0;
  for (const m of text.matchAll(JSON_KEY)) {
    if (m.index < last) continue;
    let key = m[1]!;
    try {
      key = JSON.parse(`"${key}"`) as string;
    } catch {
      // A key cut or garbled in the excerpt is judged as written.
    }
    if (!isPersonalKey(key)) continue;
    const start = m.index + m[0].length;
    const end = jsonValueEnd(text, start);
    s += `${text.slice(last, start)}"[redacted]"`;
    last = end;
  }
  s += text.slice(last);
  s = s.replace(FORM_PAIR, (all, lead: string, key: string) => (isPersonalKey(decode(key)) ? `${lead}${key}=[redacted]` : all));
  s = s.replace(URL_IN_TEXT, (url) => scrubUrl(url) ?? `${url.split(':', 1)[0]}:`);
  return maskText(s);
}
