import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Webhook signatures. Every delivery carries
 *
 *   X-Clickfold-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
 *
 * A receiver recomputes the HMAC over the timestamp, a dot and the raw request body (the bytes,
 * before any JSON parsing), compares in constant time, and refuses a timestamp older than a few
 * minutes (a replayed request). `verifyWebhook` does exactly that.
 */
export const SIGNATURE_HEADER = 'x-clickfold-signature';

export function signWebhook(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}

export function verifyWebhook(
  secret: string,
  header: string | null | undefined,
  body: string,
  { now = Date.now(), toleranceSeconds = 300 }: { now?: number; toleranceSeconds?: number } = {},
): { ok: true } | { ok: false; reason: string } {
  if (!header) return { ok: false, reason: 'no signature header' };
  const parts = new Map(header.split(',').map((p) => p.trim().split('=', 2) as [string, string]));
  const t = Number(parts.get('t'));
  const v1 = parts.get('v1') ?? '';
  if (!Number.isInteger(t) || !/^[0-9a-f]{64}$/.test(v1)) return { ok: false, reason: 'malformed signature header' };
  if (Math.abs(now / 1000 - t) > toleranceSeconds) return { ok: false, reason: 'timestamp outside the tolerance' };
  const expected = createHmac('sha256', secret).update(`${t}.${body}`).digest();
  return timingSafeEqual(expected, Buffer.from(v1, 'hex')) ? { ok: true } : { ok: false, reason: 'signature does not match' };
}
