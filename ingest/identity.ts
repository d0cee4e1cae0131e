import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Signed identify, as Intercom's identity verification does it: a site with an `identitySecret`
 * only lets a user id name the person when it comes with `sig` = hex HMAC-SHA256(secret, user id),
 * computed by the site's own server. Without it anyone could send `identify("ceo@shop.example")`
 * from a browser console and have their clicks, and the anonymous history they merge, land on
 * somebody else's person.
 */
export type UserVerifier = (user: string, sig: string | undefined) => boolean;

/** Exactly the hex digest; anything else (missing, short, overlong, not hex) fails without hashing. */
const HEX_SHA256 = /^[0-9a-f]{64}$/i;

/** Hex HMAC-SHA256(secret, user): what the site's server computes (exported for tests and docs). */
export function signUser(secret: string, user: string): string {
  return createHmac('sha256', secret).update(user, 'utf8').digest('hex');
}

export function userVerifier(secret: string): UserVerifier {
  return (user, sig) => {
    if (sig === undefined || !HEX_SHA256.test(sig)) return false;
    const expected = createHmac('sha256', secret).update(user, 'utf8').digest();
    // Constant time: a byte-by-byte comparison would let a sender find the signature byte by byte.
    return timingSafeEqual(expected, Buffer.from(sig, 'hex'));
  };
}
