import type { Transition } from '../contract/transition.js';
import type { Stages, VisitorQuery } from '../contract/visitor.js';
import type { Issue } from '../lib/http-errors.js';
import type { Site } from './sites.js';

/**
 * The visitor API's pure rules (ingest/me.ts does the I/O): whose history a request may read, and
 * how a stream's stages follow the transitions. No I/O here, so the unit tests cover every case.
 */

/** What a request may read: one person's stages, or a refusal with its status, code and reason. */
export type Access = { person: string; anonymous: boolean } | { status: 400 | 403; code: string; message: string; issues?: Issue[] };

/**
 * Who a request reads. An anonymous visitor proves itself by its visitor id alone (128 random bits
 * the snippet made; the query's schema refuses anything else). An identified one only with the
 * site's signature of its user id: a site without an identitySecret cannot vouch for a user id, so
 * identified visitors there read nothing (else anyone could read `user-42`'s stages by naming it).
 * `origin`: the page's, when the browser sent one; it must be one of the site's.
 */
export function accessOf(q: VisitorQuery, site: Site | undefined, origin: string | undefined): Access {
  if (!site) return { status: 403, code: 'unknown_site', message: `site "${q.site}" is not configured` };
  if (origin !== undefined && !site.allowsOrigin(origin)) {
    return { status: 403, code: 'origin_not_allowed', message: `origin ${origin.slice(0, 256)} may not read stages of site "${site.id}"` };
  }
  if (q.user === undefined) return { person: q.visitor, anonymous: true };
  if (!site.verifyUser) {
    return { status: 403, code: 'identity_not_verifiable', message: `site "${site.id}" does not sign user ids: an identified visitor reads nothing` };
  }
  if (!site.verifyUser(q.user, q.sig)) {
    return { status: 403, code: 'invalid_signature', message: q.sig === undefined ? 'sig is required with user' : 'sig is not the signature of user' };
  }
  return { person: q.user, anonymous: false };
}

/** One dialogue as the stream remembers it: its stage's place on the ladder and when it started. */
export interface Known {
  rank: number;
  stage: string;
  started: number;
}

/** The person's dialogues, as read from the store. */
export interface StoredDialogue {
  topic: string;
  stage: string;
  /** Epoch ms the dialogue started. */
  started: number;
}

/** What the store read says a request may see: topic → stage, or nothing for an id merged into another person. */
export function knownOf(person: string, read: { person: string; dialogues: StoredDialogue[] } | null, ladder: readonly string[]): Map<string, Known> {
  const out = new Map<string, Known>();
  // A visitor id merged into a known person answers with that person: an anonymous request for it
  // would read an identified history without the signature, so it reads nothing.
  if (!read || read.person !== person) return out;
  for (const d of read.dialogues) out.set(d.topic, { rank: ladder.indexOf(d.stage), stage: d.stage, started: d.started });
  return out;
}

/**
 * Folds one transition into a stream's stages; returns whether they changed. Transitions may come
 * before the store read that seeded `known` is answered (the subscription comes first, so none is
 * missed), so an old one must not take a stage back: it counts only when it goes higher, or when
 * it starts a new dialogue after the one known (a dialogue that expired and began again).
 */
export function applyTransition(known: Map<string, Known>, t: Transition, ladder: readonly string[]): boolean {
  const cur = known.get(t.topic);
  const rank = ladder.indexOf(t.to);
  if (cur && !(rank > cur.rank || (t.from === null && t.at > cur.started))) return false;
  known.set(t.topic, { rank, stage: t.to, started: t.from === null ? t.at : (cur?.started ?? t.at) });
  return true;
}

export function stagesOf(known: Map<string, Known>): Stages {
  const out: Stages = {};
  for (const [topic, k] of known) out[topic] = k.stage;
  return out;
}
