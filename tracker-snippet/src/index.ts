/**
 * The clickfold tracker snippet. One IIFE (build.ts), configured by its own script tag:
 *
 *   <script async src="https://ingest.example/t.js" data-site="shop"></script>
 *
 * Invariants (README.md has the long form):
 * - Nothing it does may throw into the host page: every entry point (the body, push, listeners,
 *   timers, promise callbacks) runs through `safe`; the page's own history.pushState errors pass
 *   through untouched.
 * - An event leaves the queue only when ingest has judged it (2xx, or a 4xx other than 429) or a
 *   beacon took it on page hide. Everything not yet judged is mirrored to localStorage (bounded),
 *   and the next page load sends it.
 * - Without consent (consent mode) nothing is stored or sent; events wait in memory only.
 */
import { clean, context, cut, parseIds, retryDelay, rid, validId, type Json } from './pure.js';

type Cmd = [string, ...unknown[]];

/** Runs `f`, swallowing whatever it throws: the host page must never see our errors. */
const safe =
  <A extends unknown[]>(f: (...a: A) => unknown) =>
  (...a: A): void => {
    try {
      f(...a);
    } catch {
      // Deliberately silent: a tracker that breaks the page is worse than a lost event.
    }
  };

safe(() => {
  const w = window as unknown as Record<string, unknown>;
  const doc = document;
  const nav = navigator;
  const before = w[__KEY__] as Cmd[] | undefined;
  // Loaded twice: the first copy already replaced the array stub (which has map) with its object.
  if (before && !before.map) return;
  // Set for every classic script while it first runs, async and injected ones included.
  const script = doc.currentScript as HTMLScriptElement;
  const opt = script.dataset;
  const site = opt.site;
  if (!site) return;
  // A URL object is fine: fetch and sendBeacon both take it (as its string).
  const endpoint: string | URL = opt.endpoint || new URL(__PATH__, script.src);
  const inCookie = opt.storage == 'cookie';
  const consentMode = opt.consent == 'required';
  const dnt = opt.dnt == 'respect' && ((nav as { globalPrivacyControl?: boolean }).globalPrivacyControl || nav.doNotTrack == '1');
  const QUEUE = __KEY__ + '_q';

  /** Storage that may be missing or throw (privacy modes, sandboxed frames, quota): never fatal. */
  const read = (key: string, cookie?: boolean): string | null | undefined => {
    try {
      return cookie ? doc.cookie.match('(^|; )' + key + '=([^;]+)')?.[2] : localStorage.getItem(key);
    } catch {}
  };
  /** Writes `value`, or removes the key when it is null. */
  const write = (key: string, value: string | null, cookie?: boolean) => {
    try {
      if (cookie) {
        // First-party, about a year. No Secure flag: random ids that grant nothing, and a user id's
        // signature, which only attributes analytics events and came in the (same) page anyway.
        doc.cookie = `${key}=${value || ''};path=/;SameSite=Lax;max-age=${value ? 3e7 : 0}`;
      } else if (value) localStorage.setItem(key, value);
      else localStorage.removeItem(key);
    } catch {}
  };

  const stored = read(__KEY__, inCookie);
  let [visitor, session, last, user, sig] = parseIds(stored);
  /** 1: may store and send. 0: declined (or DNT): events are dropped. undefined: waiting for consent. */
  let consent: 0 | 1 | undefined = dnt || stored == '!' ? 0 : stored || !consentMode ? 1 : undefined;
  /** Waiting to be sent. */
  let queue: Json[] = [];
  /** In the one request in flight. */
  let flight: Json[] = [];
  /** One timer: the flush of a young batch, or the retry after a failure (then `wait` is set). */
  let timer: ReturnType<typeof setTimeout> | 0 = 0;
  let wait: 0 | 1 = 0;
  let fails = 0;

  /** Stores the ids and mirrors every event not yet judged by ingest, in flight or waiting. Only with consent. */
  const save = () => {
    if (consent == 1) {
      const events = flight.concat(queue);
      write(__KEY__, [visitor, session, last, user, sig].join('|'), inCookie);
      write(QUEUE, events.length ? JSON.stringify(events) : null);
    }
  };
  const body = (events: Json[]) => JSON.stringify({ site, visitor, session, user, sig, events });

  const send = () => {
    if (consent != 1 || flight.length || wait || !queue.length) return;
    flight = queue.splice(0, __CHUNK__);
    const data = body(flight);
    // A string body goes as text/plain: a CORS-simple request, no preflight. keepalive lets the
    // request outlive the page, within the browser's 64 KiB budget for such requests.
    // A network failure hands done its error: truthy, so not judged.
    fetch(endpoint, { method: 'POST', body: data, keepalive: data.length < 6e4 }).then(
      (r) => done(r.status > 499 || r.status == 429, r.headers.get('retry-after')),
      done,
    );
  };

  /** Ingest judged the events (2xx, or a 4xx it will answer the same way again), or `failed`: it did not answer, or asked for a retry. */
  const done = safe((failed: unknown, retryAfter?: string | null) => {
    if (!failed) fails = 0;
    else {
      queue = flight.concat(queue);
      wait = 1;
      clearTimeout(timer);
      timer = setTimeout(tick, retryDelay(++fails, retryAfter));
    }
    flight = [];
    save();
    send();
  });

  const tick = safe(() => {
    timer = wait = 0;
    send();
  });

  const event = (type: string, fields: Json) => {
    if (consent == 0) return;
    const now = Date.now();
    if (!session || now - last > __SESSION_MS__) session = rid();
    last = now;
    queue.push({ type, id: rid(), ts: now, url: cut(location.href, 2048), ...fields });
    // Bounded: the oldest events go first.
    queue.splice(0, queue.length - __MAX_QUEUE__);
    save();
    if (queue.length >= __BATCH__) send();
    else timer ||= setTimeout(tick, __FLUSH_MS__);
  };

  /**
   * Page hidden (tab switch, navigation, close): hand what waits to sendBeacon, unless the network
   * is failing (then it all stays stored for the next page load). What the beacon took leaves the
   * queue and storage, so the next page does not send it again; what it refused stays. A request
   * in flight stays stored until its answer comes: if the page is gone by then, the next page
   * sends it again and ingest's dedupe by event id absorbs the rare double.
   */
  const hide = safe(() => {
    if (consent == 1 && !wait && nav.onLine) while (queue.length && nav.sendBeacon(endpoint, body(queue.slice(0, __CHUNK__)))) queue.splice(0, __CHUNK__);
    save();
  });

  let lastPage = '';
  let ref: string | undefined = doc.referrer;
  const page = safe(() => {
    const url = location.href;
    const [path] = url.split('#');
    // Only a changed URL is a new page view; fragment changes (#section) are not.
    if (path == lastPage) return;
    lastPage = path!;
    event('page', { ref: cut(ref, 2048), title: cut(doc.title, 256) });
    ref = url;
  });

  // biome-ignore lint/suspicious/noExplicitAny: commands come from page scripts; each handler checks its own arguments
  const api: Record<string, (...a: any[]) => void> = {
    track: (name: unknown, props?: unknown, value?: unknown) => {
      name = cut(name, 128);
      // A numeric string counts ('129'); anything else that is not a finite amount >= 0 is left out.
      value = +(value as number);
      if (name) event('track', { name, props: clean(props), value: (value as number) >= 0 && (value as number) < 1 / 0 ? value : undefined });
    },
    // `s`: the site server's signature of the id (sites with an identitySecret need it).
    identify: (id: unknown, s?: unknown) => {
      id = validId(id);
      s = cut(s, 128);
      if (id && (id != user || s != sig)) {
        user = id as string;
        sig = s as string | undefined;
        event('identify', { user, sig });
      }
    },
    // The add-on (t-stages.js, beside this file) is fetched the first time a page asks for its
    // stages: pages that never do pay nothing. Until it runs, commands wait in `s`; it then
    // replaces `s` with its own handler and takes what waited.
    stages: (...a: unknown[]) => {
      import(new URL('t-stages.js', script.src) as unknown as string).then((m) => m.d(a, opt), safe);
    },
    consent: (yes: unknown) => {
      if (dnt) return;
      if (yes) {
        consent = 1;
        save();
        send();
      } else {
        consent = 0;
        // Forget everything: a new visitor id if consent is given again later.
        queue = [];
        flight = [];
        [visitor, session, last, user, sig] = parseIds('');
        write(QUEUE, null);
        // Without consent mode, remember the opt-out (else the next page would track again).
        // '!' is no valid id: parseIds makes a fresh visitor of it if consent comes back.
        write(__KEY__, consentMode ? null : '!', inCookie);
      }
    },
  };
  const run = safe(([c, ...a]: Cmd) => api[c]!(...a));

  // Events a previous page could not deliver go first.
  if (consent == 1) {
    try {
      // Whatever is there becomes a list; an entry that is not an event is judged (400) and dropped by ingest.
      queue = [].concat(JSON.parse(read(QUEUE)!) || []);
    } catch {}
  }

  const hist = history as unknown as Record<string, (...a: unknown[]) => unknown>;
  for (const m of ['pushState', 'replaceState']) {
    const original = hist[m]!;
    hist[m] = function (this: History, ...a: unknown[]) {
      // The page's own errors (a cross-origin URL...) propagate as they would without us.
      const r = original.apply(this, a);
      page();
      return r;
    };
  }
  // All on window: visibilitychange bubbles up from the document, and a capturing click
  // listener here runs before any page handler could stop the click's propagation.
  // biome-ignore lint/suspicious/noExplicitAny: one helper for events of different types
  const on = (type: string, f: (e: any) => unknown) => addEventListener(type, safe(f), true);
  on('popstate', page);
  on('pagehide', hide);
  on('visibilitychange', () => doc.hidden && hide());
  on('online', () => (clearTimeout(timer), tick()));
  on('click', (e: Event) => {
    const el = (e.target as Element).closest?.('a,button,[type=submit],[type=button],[role=button],[data-topic],[data-stage]');
    if (!el) return;
    // Hints may sit on the element or on any ancestor, each on its own (a section's topic, a button's stage).
    const topic = el.closest('[data-topic]') as HTMLElement | null;
    const stage = el.closest('[data-stage]') as HTMLElement | null;
    event('click', { topic: cut(topic?.dataset.topic, 128), stage: cut(stage?.dataset.stage, 64), el: context(el, topic, stage) });
  });

  w[__KEY__] = { push: (...cmds: Cmd[]) => cmds.forEach(run) };
  page();
  before?.forEach(run);
})();
