import { z } from 'zod';
import { LIMITS, UserSig } from './collect.js';

/**
 * The visitor's own stages, as the page reads them (`GET /v1/me`, `GET /v1/me/stream`, the
 * snippet's `stages` add-on). Privacy by default: a page gets topic → stage and nothing else (no
 * times, counts, channels, linked ids or RFM), and only for the visitor it proves to be.
 */

/**
 * The shapes of the snippet's visitor ids: 128 random bits as digits (four 32-bit numbers, up to 40
 * digits), the 96 bits as digits older snippets stored (from 20 digits on: shorter is all but
 * impossible for random numbers), or 22 base64url characters (128 bits, as other clients may make
 * them). An anonymous visitor's only proof of who it is, so an id a person could pick (`v-alice`, a
 * CRM number sent by a server) never reads anything.
 */
export const SNIPPET_VISITOR_ID = /^(?:\d{20,40}|[A-Za-z0-9_-]{22})$/;

const userId = z
  .string()
  .min(1)
  .max(LIMITS.idLength)
  .regex(/^[\w.:@+-]+$/, 'only letters, digits and . _ : @ + -');

/** The query of both routes: who asks, and for which site. */
export const VisitorQuery = z
  .object({
    site: z
      .string()
      .min(1)
      .max(LIMITS.idLength)
      .regex(/^[\w.:@+-]+$/, 'only letters, digits and . _ : @ + -'),
    visitor: z.string().regex(SNIPPET_VISITOR_ID, 'not a visitor id the snippet made (20 to 40 digits, or 22 base64url characters)'),
    /** Set once the page called identify(); then `sig` must be the site's signature of it. */
    user: userId.optional(),
    sig: UserSig.optional(),
  })
  .strict();
export type VisitorQuery = z.infer<typeof VisitorQuery>;

/** Topic → the stage the visitor reached in its current dialogue about it. */
export const Stages = z.record(z.string(), z.string());
export type Stages = z.infer<typeof Stages>;

/** `GET /v1/me`; also the data of every `message` event of `GET /v1/me/stream` (the whole map, each time it changes). */
export const MeResponse = z.object({ stages: Stages }).strict();
export type MeResponse = z.infer<typeof MeResponse>;
