import { Hono, type Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { Transition } from '../contract/transition.js';
import { VisitorQuery } from '../contract/visitor.js';
import { httpError } from '../lib/http-errors.js';
import { accessOf, applyTransition, knownOf, stagesOf, type StoredDialogue } from './me-access.js';
import { siteCors } from './site-cors.js';
import type { SiteRegistry } from './sites.js';

/**
 * The visitor's own stages, for the page it is on (the snippet's `stages` add-on):
 *
 *   GET /v1/me?site=&visitor=[&user=&sig=]          {"stages": {"product:sku-1": "detail"}}
 *   GET /v1/me/stream?site=&visitor=[&user=&sig=]   server-sent events: one `message` with the
 *                                                   same body now, and again at every change
 *
 * Who may read what: ingest/me-access.ts. A GET with the ids in the query, so the page can use
 * EventSource (which sends no headers and no body) and no preflight is needed.
 *
 * The stream follows `history.transitions` (through `VisitorSource.follow`: the process's live
 * feed, which every process fills from the log), so any number of ingest processes can serve it,
 * whichever worker folds the person. Bounded: a few streams per person (tabs), a cap per process,
 * the site's rate limits on opening, and a slow reader is cut rather than buffered.
 */

/** What the visitor API needs of the history, wired by the process (apps/): ingest imports no history code. */
export interface VisitorSource {
  /** The stage ladder, lowest first. */
  readonly ladder: readonly string[];
  /**
   * The person `id` names and their dialogues, or null when the store holds nothing. A visitor id
   * merged into a known person answers with that person (and is then refused: me-access.ts).
   */
  read(id: string): Promise<{ person: string; dialogues: StoredDialogue[] } | null>;
  /** Every transition from now on; `onClose` when the feed ends (shutdown). Returns the unsubscribe. */
  follow(fn: (t: Transition) => void, onClose: () => void): () => void;
}

export interface VisitorApiOptions {
  sites: SiteRegistry;
  source: VisitorSource;
  clientIp: (c: Context) => string | undefined;
  /** Open streams per person (tabs of one visitor); default 8. */
  streamsPerPerson?: number;
  /** Open streams per process; default 10,000. */
  streamsPerProcess?: number;
  /** Keep-alive comment interval, ms; default 20,000. */
  keepAliveMs?: number;
  /** Longest a stream stays open, ms (EventSource opens a new one); default 30 minutes. */
  maxStreamMs?: number;
}

/** Retry-After of a refused stream, seconds. */
const RETRY_S = 10;
/** Changes waiting for a slow reader; past it the stream is cut (EventSource reconnects and reads the map anew). */
const MAX_QUEUED = 64;

/**
 * Streams by person: one subscription to the feed for the whole process, and a map from person to
 * their open streams, so a transition costs one lookup, not one test per open stream.
 */
export class PersonStreams {
  private readonly byPerson = new Map<string, Set<(t: Transition) => void>>();
  private readonly closers = new Set<() => void>();
  private unfollow: (() => void) | null = null;
  private open = 0;
  private closed = false;

  constructor(
    private readonly source: VisitorSource,
    private readonly perPerson: number,
    private readonly perProcess: number,
  ) {}

  /** Adds a listener, or says why not: `person` or `process` cap reached, or `closed` (shutting down). */
  add(person: string, fn: (t: Transition) => void, onClose: () => void): (() => void) | 'person' | 'process' | 'closed' {
    if (this.closed) return 'closed';
    const set = this.byPerson.get(person) ?? new Set();
    if (set.size >= this.perPerson) return 'person';
    if (this.open >= this.perProcess) return 'process';
    this.unfollow ??= this.source.follow(
      (t) => this.publish(t),
      () => this.close(),
    );
    set.add(fn);
    this.byPerson.set(person, set);
    this.closers.add(onClose);
    this.open++;
    let removed = false;
    return () => {
      if (removed) return;
      removed = true;
      this.open--;
      this.closers.delete(onClose);
      set.delete(fn);
      if (set.size === 0) this.byPerson.delete(person);
    };
  }

  get size(): number {
    return this.open;
  }

  private publish(t: Transition): void {
    const set = this.byPerson.get(t.person);
    if (!set) return;
    for (const fn of set) {
      try {
        fn(t);
      } catch {
        // One stream's failure is not the others'.
      }
    }
  }

  /** Ends every stream (the feed closed: shutdown) and refuses new ones. */
  close(): void {
    this.closed = true;
    this.unfollow?.();
    for (const c of [...this.closers]) c();
  }
}

export function visitorRoutes(opts: VisitorApiOptions): Hono {
  const streams = new PersonStreams(opts.source, opts.streamsPerPerson ?? 8, opts.streamsPerProcess ?? 10_000);
  const keepAliveMs = opts.keepAliveMs ?? 20_000;
  const maxStreamMs = opts.maxStreamMs ?? 30 * 60_000;
  const app = new Hono();
  app.use('/v1/me', siteCors(opts.sites, { methods: 'GET, OPTIONS', headers: '' }));
  app.use('/v1/me/stream', siteCors(opts.sites, { methods: 'GET, OPTIONS', headers: '' }));

  /** The checks both routes share: the query, the site, the origin, the identity, the rate limit. */
  const admit = (c: Context): string => {
    const parsed = VisitorQuery.safeParse(c.req.query());
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => ({ path: i.path.join('.') || '(query)', message: i.message }));
      throw httpError(400, 'invalid_query', 'the query needs site and the snippet visitor id, and may carry user and sig', { issues });
    }
    const site = opts.sites.byId(parsed.data.site);
    const access = accessOf(parsed.data, site, c.req.header('origin'));
    if ('status' in access) throw httpError(access.status, access.code, access.message);
    const wait = site!.limit(opts.clientIp(c));
    if (wait > 0) throw httpError(429, 'rate_limited', `too many requests for site "${site!.id}"`, { headers: { 'retry-after': String(wait) } });
    return access.person;
  };

  app.get('/v1/me', async (c) => {
    const person = admit(c);
    const known = knownOf(person, await opts.source.read(person), opts.source.ladder);
    c.header('cache-control', 'no-store');
    return c.json({ stages: stagesOf(known) });
  });

  app.get('/v1/me/stream', (c) => {
    const person = admit(c);
    const queue: string[] = [];
    let done = false;
    let wake: (() => void) | null = null;
    const poke = () => {
      const w = wake;
      wake = null;
      w?.();
    };
    // Subscribe before reading, so no transition falls between the read and the subscription;
    // those that come before the read answers wait in `early` and are folded onto it.
    let known: ReturnType<typeof knownOf> | null = null;
    const early: Transition[] = [];
    const send = () => {
      if (queue.length >= MAX_QUEUED) done = true;
      else queue.push(JSON.stringify({ stages: stagesOf(known!) }));
      poke();
    };
    const remove = streams.add(
      person,
      (t) => {
        if (!known) early.push(t);
        else if (applyTransition(known, t, opts.source.ladder)) send();
      },
      () => {
        done = true;
        poke();
      },
    );
    if (typeof remove !== 'function') {
      const why = remove === 'person' ? `at most ${opts.streamsPerPerson ?? 8} open streams per visitor` : 'too many open streams';
      throw httpError(remove === 'closed' ? 503 : 429, 'too_many_streams', remove === 'closed' ? 'shutting down' : why, {
        headers: { 'retry-after': String(RETRY_S) },
      });
    }
    c.header('cache-control', 'no-store');
    c.header('x-accel-buffering', 'no');
    return streamSSE(c, async (stream) => {
      stream.onAbort(() => {
        done = true;
        poke();
      });
      const until = Date.now() + maxStreamMs;
      try {
        const read = await opts.source.read(person);
        known = knownOf(person, read, opts.source.ladder);
        for (const t of early.splice(0)) applyTransition(known, t, opts.source.ladder);
        // A dropped stream (a proxy, the 30-minute bound) comes back within a second, reading the map anew.
        await stream.writeSSE({ data: JSON.stringify({ stages: stagesOf(known) }), retry: 1000 });
        while (!done && !stream.aborted && Date.now() < until) {
          while (queue.length > 0 && !done) await stream.writeSSE({ data: queue.shift()! });
          if (done) break;
          let timer: NodeJS.Timeout | undefined;
          const woken = await new Promise<boolean>((resolve) => {
            wake = () => resolve(true);
            timer = setTimeout(() => resolve(false), Math.min(keepAliveMs, Math.max(0, until - Date.now())));
          });
          clearTimeout(timer);
          wake = null;
          if (!woken && !done) await stream.write(': keep-alive\n\n');
        }
      } finally {
        remove();
      }
    });
  });

  return app;
}
