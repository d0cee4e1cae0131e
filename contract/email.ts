import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { LIMITS } from './collect.js';
import { RESERVED_KEYS, SegmentId } from './segment.js';

/**
 * The query parameters of e-mail links, as a mailer writes them:
 *
 * - open pixel: `GET /v1/email/open?site=shop&user=u-42&campaign=spring&msg=m-1`
 * - click:      `GET /v1/email/click?site=shop&user=u-42&campaign=spring&link=cta&url=https%3A%2F%2Fshop.example%2Fp%2F1&p.product=sku-1&sig=…`
 *
 * `p.<name>` parameters become event properties (`{props.product}` in a topic-map rule).
 * A click's target must be signed with the shared secret (`sig`, see `signEmailLink`) unless its
 * host is on the site's `redirectHosts`; otherwise ingest refuses it (no open redirect).
 */
export const EMAIL_PROPS = 16;

export const EmailParams = z.object({
  site: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[\w.:@+-]+$/, 'only letters, digits and . _ : @ + -'),
  user: SegmentId,
  campaign: z.string().min(1).max(LIMITS.nameLength),
  /** The message (one send to one recipient), for the mailer's own bookkeeping. */
  msg: z.string().min(1).max(LIMITS.idLength).optional(),
  /** Which link of the message was clicked. */
  link: z.string().min(1).max(LIMITS.nameLength).optional(),
  url: z.string().min(1).max(LIMITS.urlLength).optional(),
  // Checked before the record: zod's record parsing would silently drop a `__proto__` key.
  props: z
    .custom<unknown>(
      (v) => !(v && typeof v === 'object' && Object.keys(v).some((k) => RESERVED_KEYS.has(k))),
      'reserved property name (__proto__, constructor, prototype)',
    )
    .pipe(z.record(z.string().min(1).max(LIMITS.propKeyLength), z.string().max(LIMITS.propValueLength)))
    .refine((p) => Object.keys(p).length <= EMAIL_PROPS, `at most ${EMAIL_PROPS} p.* properties`),
});
export type EmailParams = z.infer<typeof EmailParams>;

/** The parameters a signature covers: every known one and every `p.*`, never tracking junk a mail system appends. */
export const SIGNED_PARAMS = ['site', 'user', 'campaign', 'msg', 'link', 'url'] as const;
const isSigned = (k: string) => (SIGNED_PARAMS as readonly string[]).includes(k) || k.startsWith('p.');

/** `k=v` pairs of the signed parameters, sorted by key, URI-encoded, joined with `&`. */
export function canonicalEmailParams(params: Iterable<[string, string]>): string {
  return [...params]
    .filter(([k]) => isSigned(k))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join('&');
}

/** HMAC-SHA256 of the canonical parameters, base64url without padding. */
export function signEmailLink(secret: string, params: Record<string, string>): string {
  return createHmac('sha256', secret)
    .update(canonicalEmailParams(Object.entries(params)))
    .digest('base64url');
}

export function verifyEmailLink(secret: string, params: Iterable<[string, string]>, sig: string): boolean {
  const expected = createHmac('sha256', secret).update(canonicalEmailParams(params)).digest();
  const given = Buffer.from(sig, 'base64url');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** A signed click link for a mailer: `emailClickUrl('https://t.shop.example', secret, {...})`. */
export function emailClickUrl(base: string, secret: string, params: Record<string, string>): string {
  const qs = new URLSearchParams(params);
  qs.set('sig', signEmailLink(secret, params));
  return `${base.replace(/\/+$/, '')}/v1/email/click?${qs}`;
}

/** An open-pixel link for a mailer (opens are not signed: like a page view, anyone can send one). */
export function emailOpenUrl(base: string, params: Record<string, string>): string {
  return `${base.replace(/\/+$/, '')}/v1/email/open?${new URLSearchParams(params)}`;
}
