/**
 * The snippet's `stages` add-on, built to dist/t-stages.js (an ES module, at most 1,024 bytes
 * gzipped). The snippet imports it from its own origin the first time a page pushes
 * `['stages', callback]`, and hands it each such command (`d`), with its script tag's options.
 *
 *   clickfold.push(['stages', (stages) => ...])       // {"product:sku-1": "detail", ...} now, and at every change
 *   clickfold.push(['stages', sameCallback, false])   // stops calling it
 *
 * One EventSource on GET /v1/me/stream (ingest/me.ts) for the page, whatever the number of
 * callbacks. The ids are the ones the snippet stored (storage or cookie): nothing stored (no
 * consent yet, declined, DNT) means no stream. After every command (identify, consent) and when
 * another tab changes the storage, the ids are read again and the stream follows them.
 * Like the snippet, it never throws into the page.
 */

type Stages = Record<string, string>;
type Callback = (stages: Stages) => unknown;

const callbacks = new Set<Callback>();
let stream: EventSource | undefined;
/** The query the stream was opened with; '' when none. */
let opened = '';
/** The last map received (its JSON), given at once to callbacks added later. */
let last: string | undefined;
let opt: DOMStringMap | undefined;
let retry: ReturnType<typeof setTimeout> | undefined;

const call = (cb: Callback, data: string) => {
  try {
    cb(JSON.parse(data).stages);
  } catch {}
};

/** The query for the ids stored now, or '' when there are none to prove anything with. */
const query = (): string => {
  let rec: string | null | undefined;
  try {
    rec = opt!.storage == 'cookie' ? document.cookie.match(`(^|; )${__KEY__}=([^;]+)`)?.[2] : localStorage.getItem(__KEY__);
  } catch {}
  const [visitor, , , user, sig] = (rec || '').split('|');
  // '!' (declined) and empty storage have no visitor; ingest judges everything else.
  return visitor && visitor != '!' ? '?' + new URLSearchParams(Object.entries({ site: opt!.site!, visitor, user, sig }).filter((e) => e[1]) as string[][]) : '';
};

/**
 * Opens, moves or closes the stream, as the ids and the callbacks now ask. On the origin the
 * snippet sends to: its data-endpoint's (relative to the page, as fetch takes it), else its own.
 */
const follow = () => {
  try {
    open();
  } catch {}
};

/** `follow`'s work; `follow` runs it from the page's push, timers and storage events, where nothing may throw. */
const open = () => {
  const q = callbacks.size ? query() : '';
  if (q == opened) return;
  stream?.close();
  clearTimeout(retry);
  stream = undefined;
  opened = q;
  // Kept across a move (identify): callbacks hear of the new person's map only if it differs.
  if (!q) return (last = undefined);
  const es = (stream = new EventSource(new URL('/v1/me/stream' + q, new URL(opt!.endpoint || import.meta.url, location.href))));
  es.onmessage = (e) => {
    if (e.data != last) {
      last = e.data as string;
      for (const cb of callbacks) call(cb, last);
    }
  };
  // Refused (4xx, 429) or gone: EventSource gives up; try again in a while, as a new stream.
  // (Chromium reports a refusal as an error: the page's console shows it, nothing is thrown.)
  es.onerror = () => {
    if (es.readyState == 2 && es == stream) {
      opened = '';
      retry = setTimeout(follow, 3e4);
    }
  };
};

/** One `['stages', callback, on]` command from the snippet, with the snippet tag's options. */
export const d = ([cb, on]: unknown[], options: DOMStringMap) => {
  try {
    if (!opt) {
      opt = options;
      const c = (window as unknown as Record<string, { push: (...a: unknown[]) => void }>)[__KEY__]!;
      const push = c.push;
      // After every command: identify and consent change the ids the stream must prove.
      c.push = (...a) => {
        push(...a);
        follow();
      };
      addEventListener('storage', follow);
    }
    if (typeof cb == 'function') {
      if (on === false) callbacks.delete(cb as Callback);
      else if (!callbacks.has(cb as Callback)) {
        callbacks.add(cb as Callback);
        if (last) call(cb as Callback, last);
      }
    }
  } catch {}
  follow();
};
