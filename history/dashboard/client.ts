/**
 * The dashboard in the browser: plain TypeScript and the DOM, bundled by `npm run build` (build.ts)
 * and served by route.ts. The API's shapes come from contract/query.ts as types only (nothing of
 * zod reaches the browser); what the page shows is worked out in figures.ts.
 * Every value from the API is untrusted (person ids and topics come from clicks), so text is only
 * ever set with textContent, never as HTML.
 */

import type { ErrorBody, Funnel, FunnelFigures, Needs, Person, TopicSummary, Topics } from '../../contract/query.js';
import type { Transition } from '../../contract/transition.js';
import { ago, funnelBox, fullDate, people, STEP_HELP, stepName, stepVerb, topicFunnel } from './figures.js';

const KEY_STORAGE = 'clickfold-api-key';
const KEY_COOKIE = 'clickfold_key';
const STREAM = '/v1/transitions/stream';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

/** Creates an element; strings become text nodes (never HTML). */
function h(tag: string, attrs: Record<string, string | undefined> = {}, ...children: (Node | string | null | undefined | false)[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) el.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

let ladder: string[] = ['intro', 'detail', 'purchase'];

// --- API access --------------------------------------------------------------------------------

let apiKey: string | null = sessionStorage.getItem(KEY_STORAGE);

class Unauthorized extends Error {}

function setStreamCookie(key: string | null): void {
  // EventSource cannot send an Authorization header; the stream alone accepts this cookie.
  // biome-ignore lint/suspicious/noDocumentCookie: the one cookie the page sets, scoped to the stream's path
  document.cookie = key
    ? `${KEY_COOKIE}=${encodeURIComponent(key)}; path=${STREAM}; SameSite=Strict`
    : `${KEY_COOKIE}=; path=${STREAM}; SameSite=Strict; max-age=0`;
}

async function api(path: string, accept = 'application/json'): Promise<Response> {
  const headers: Record<string, string> = { accept };
  if (apiKey) headers.authorization = `Bearer ${apiKey}`;
  const res = await fetch(path, { headers });
  if (res.status === 401) throw new Unauthorized();
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try {
      message = ((await res.json()) as ErrorBody).error.message;
    } catch {
      // keep the status line
    }
    throw new Error(message);
  }
  return res;
}
const getJson = async <T>(path: string): Promise<T> => (await (await api(path)).json()) as T;

function askForKey(message?: string): void {
  $('keygate').hidden = false;
  const err = $('keyerror');
  err.hidden = !message;
  err.textContent = message ?? '';
  $<HTMLInputElement>('keyinput').focus();
}

function showAccess(open: boolean): void {
  const box = $('access');
  box.replaceChildren();
  if (open) {
    box.append('Open access: anyone who can reach this address can see this page.');
  } else if (apiKey) {
    const out = h('button', { type: 'button', class: 'secondary' }, 'Forget my key');
    out.addEventListener('click', () => {
      sessionStorage.removeItem(KEY_STORAGE);
      apiKey = null;
      setStreamCookie(null);
      location.reload();
    });
    box.append('Signed in with an API key.', out);
  }
}

// --- topics and funnels ------------------------------------------------------------------------

let topics: TopicSummary[] = [];

function funnelCard(topic: string, f: FunnelFigures): HTMLElement {
  const box = funnelBox(f);
  const card = h(
    'article',
    { class: 'topic', 'data-topic': topic },
    h('div', { class: 'topic-head' }, h('h3', {}, topic), h('span', { class: 'total' }, box.total)),
  );
  for (const b of box.bars) {
    const bar = h('span');
    bar.style.width = `${b.width}%`;
    card.append(
      h(
        'div',
        { class: 'step', 'data-stage': b.stage, title: b.title },
        h('span', { class: 'name' }, b.name),
        h('div', { class: 'bar' }, bar),
        h('span', { class: 'count' }, b.count),
      ),
    );
    if (b.wentOn !== null) card.append(h('div', { class: 'went-on' }, b.wentOn));
  }
  return card;
}

async function loadTopics(): Promise<void> {
  const data = await getJson<Topics>('/v1/topics');
  ladder = data.ladder;
  topics = data.topics;
  $('steps').replaceChildren(
    ...ladder.map((s) => h('li', {}, h('b', {}, stepName(s)), STEP_HELP[s] ? h('span', { class: 'muted' }, `: ${STEP_HELP[s]}`) : null)),
  );
  const box = $('topics');
  const since = $<HTMLSelectElement>('window').value;
  if (topics.length === 0) {
    box.replaceChildren(h('p', { class: 'empty' }, 'No interest recorded yet. As soon as visitors look at your products, they show up here.'));
  } else {
    const shown = topics.slice(0, 30);
    const funnels = await Promise.all(
      shown.map((t) => (since ? getJson<Funnel>(`/v1/topics/${encodeURIComponent(t.topic)}/funnel?since=${since}`) : Promise.resolve(topicFunnel(ladder, t)))),
    );
    const cards = shown.map((t, i) => ({ t, f: funnels[i]! })).filter(({ f }) => f.people > 0);
    box.replaceChildren(...cards.map(({ t, f }) => funnelCard(t.topic, f)));
    if (cards.length === 0) box.append(h('p', { class: 'empty' }, 'Nobody was active in this period.'));
    if (topics.length > shown.length) box.append(h('p', { class: 'hint' }, `Showing the 30 busiest of ${topics.length} topics.`));
  }
  fillNeedsControls();
}

let refreshTimer: number | undefined;
let needsDirty = false;
/**
 * Funnels, and the first page of the needs list when the step was about its topic, follow the live
 * feed, at most once a second (a list paged further with "Show more" stays as it is, so nobody
 * loses their place).
 */
function refreshSoon(topic: string): void {
  if (topic === $<HTMLSelectElement>('needs-topic').value) needsDirty = true;
  if (refreshTimer !== undefined) return;
  refreshTimer = window.setTimeout(() => {
    refreshTimer = undefined;
    const needs = needsDirty && !pagedMore;
    needsDirty = false;
    loadTopics()
      .then(() => (needs ? loadNeeds() : undefined))
      .catch(() => {});
  }, 1000);
}

// --- needs -------------------------------------------------------------------------------------

function fillNeedsControls(): void {
  const topicSel = $<HTMLSelectElement>('needs-topic');
  const current = topicSel.value;
  topicSel.replaceChildren(...topics.map((t) => h('option', { value: t.topic }, t.topic)));
  if (topics.some((t) => t.topic === current)) topicSel.value = current;
  const stageSel = $<HTMLSelectElement>('needs-stage');
  if (stageSel.options.length !== ladder.length - 1) {
    // Every stage but the last: a need is someone who has not reached the end yet.
    stageSel.replaceChildren(...ladder.slice(0, -1).map((s) => h('option', { value: s }, stepName(s))));
    stageSel.value = ladder[ladder.length - 2] ?? ladder[0]!;
  }
  $<HTMLButtonElement>('needs-csv').disabled = topics.length === 0;
  if (topics.length === 0) showNeedsEmpty('Nothing to show yet: nobody has looked at anything.');
}

let nextCursor: string | null = null;
let pagedMore = false;

function needsQuery(): string {
  const topic = $<HTMLSelectElement>('needs-topic').value;
  const stage = $<HTMLSelectElement>('needs-stage').value;
  const active = $<HTMLSelectElement>('needs-active').value;
  return `/v1/topics/${encodeURIComponent(topic)}/needs?stage=${encodeURIComponent(stage)}&activeWithin=${active}`;
}

function showNeedsEmpty(text: string): void {
  $('needs-table').hidden = true;
  $('needs-more').hidden = true;
  $('needs-summary').textContent = '';
  const e = $('needs-empty');
  e.hidden = false;
  e.textContent = text;
}

function personLink(id: string): HTMLElement {
  const b = h('button', { type: 'button', class: 'link', title: 'Show everything about this person' }, id);
  b.addEventListener('click', () => lookUp(id));
  return b;
}

async function loadNeeds(more = false): Promise<void> {
  if (!$<HTMLSelectElement>('needs-topic').value) return;
  const stage = $<HTMLSelectElement>('needs-stage').value;
  const next = ladder[ladder.indexOf(stage) + 1] ?? '';
  const page = await getJson<Needs>(needsQuery() + (more && nextCursor ? `&cursor=${encodeURIComponent(nextCursor)}` : ''));
  nextCursor = page.nextCursor;
  pagedMore = more;
  const rows = $('needs-rows');
  if (!more) rows.replaceChildren();
  if (page.total === 0) {
    showNeedsEmpty(
      `Nobody is waiting at “${stepName(stage)}” right now: everyone seen in that period either went on to “${stepName(next)}” or has not got this far.`,
    );
    return;
  }
  $('needs-empty').hidden = true;
  $('needs-table').hidden = false;
  for (const n of page.needs) {
    rows.append(
      h(
        'tr',
        { 'data-person': n.person },
        h('td', {}, personLink(n.person)),
        h('td', {}, h('span', { class: 'pill' }, stepName(n.stage))),
        h('td', { title: fullDate(Date.parse(n.lastActivity)) }, ago(Date.parse(n.lastActivity))),
        h('td', {}, String(n.interactions)),
        h('td', {}, n.channels.join(', ')),
      ),
    );
  }
  $('needs-summary').textContent =
    `${people(page.total)} got as far as “${stepName(stage)}” but not to “${stepName(next)}”. Most promising first.${page.truncated ? ' (Only the most recently active are listed.)' : ''}`;
  $('needs-more').hidden = !nextCursor;
}

async function downloadCsv(): Promise<void> {
  const button = $<HTMLButtonElement>('needs-csv');
  button.disabled = true;
  try {
    const res = await api(needsQuery(), 'text/csv');
    const name = /filename="([^"]+)"/.exec(res.headers.get('content-disposition') ?? '')?.[1] ?? 'needs.csv';
    const url = URL.createObjectURL(await res.blob());
    const a = h('a', { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } finally {
    button.disabled = false;
  }
}

// --- live feed ---------------------------------------------------------------------------------

let source: EventSource | null = null;

function connectLive(): void {
  source?.close();
  setStreamCookie(apiKey);
  const status = $('live-status');
  source = new EventSource(STREAM);
  source.addEventListener('ready', () => {
    status.textContent = 'live';
    status.className = 'status on';
  });
  source.addEventListener('transition', (e) => {
    const t = JSON.parse((e as MessageEvent<string>).data) as Transition;
    addLive(t);
    refreshSoon(t.topic);
  });
  source.addEventListener('error', () => {
    status.textContent = 'reconnecting…';
    status.className = 'status off';
  });
}

function addLive(t: Transition): void {
  const list = $('live');
  $('live-empty').hidden = true;
  const when = h('span', { class: 'when', 'data-at': String(t.at), title: fullDate(t.at) }, `${ago(t.at)} · ${t.channel}`);
  const li = h(
    'li',
    { class: 'fresh', 'data-person': t.person, 'data-topic': t.topic, 'data-to': t.to },
    personLink(t.person),
    ` ${stepVerb(t.to)} `,
    h('b', {}, t.topic),
    when,
  );
  list.prepend(li);
  while (list.children.length > 50) list.lastElementChild?.remove();
}

setInterval(() => {
  for (const el of document.querySelectorAll<HTMLElement>('.when[data-at]')) {
    const at = Number(el.dataset.at);
    el.textContent = `${ago(at)} · ${el.textContent?.split(' · ')[1] ?? ''}`;
  }
}, 30_000);

// --- person lookup -----------------------------------------------------------------------------

async function lookUp(id: string): Promise<void> {
  $<HTMLInputElement>('person-id').value = id;
  const box = $('person');
  box.replaceChildren(h('p', { class: 'empty' }, 'Looking up…'));
  $('person-section').scrollIntoView({ behavior: 'smooth', block: 'nearest' });
  let p: Person;
  try {
    p = await getJson<Person>(`/v1/people/${encodeURIComponent(id)}`);
  } catch (err) {
    if (err instanceof Unauthorized) throw err;
    box.replaceChildren(h('p', { class: 'empty' }, `Nobody with the id “${id}” has been seen.`));
    return;
  }
  const wrap = h('div', { class: 'person' });
  wrap.append(h('h3', {}, p.person === id ? p.person : `${id} is ${p.person}`));
  if (p.linkedIds.length) wrap.append(h('p', { class: 'hint' }, `Also seen anonymously as ${p.linkedIds.join(', ')} before signing in.`));

  const table = h(
    'table',
    { class: 'table' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Interested in'), h('th', {}, 'Got as far as'), h('th', {}, 'Last seen'), h('th', {}, 'Channels'))),
  );
  const body = h('tbody');
  for (const d of p.dialogues) {
    body.append(
      h(
        'tr',
        {},
        h('td', {}, d.topic),
        h('td', {}, h('span', { class: 'pill' }, stepName(d.stage))),
        h('td', { title: fullDate(Date.parse(d.lastActivity)) }, ago(Date.parse(d.lastActivity))),
        h('td', {}, d.channels.join(', ')),
      ),
    );
  }
  table.append(body);
  wrap.append(table);

  wrap.append(h('h3', {}, 'Purchases'));
  if (p.rfm && p.rfmScores) {
    wrap.append(
      h(
        'dl',
        {},
        h('dt', {}, 'Purchases'),
        h('dd', {}, String(p.rfm.purchases)),
        h('dt', {}, 'Spent in total'),
        h('dd', {}, p.rfm.totalValue.toLocaleString()),
        h('dt', {}, 'Last purchase'),
        h('dd', {}, `${ago(Date.parse(p.rfm.lastPurchase))} (${fullDate(Date.parse(p.rfm.lastPurchase))})`),
      ),
      h(
        'div',
        { class: 'scores', title: 'Scores from 1 (weakest) to 5 (strongest)' },
        h('span', { class: 'score' }, 'Bought recently ', h('b', {}, `${p.rfmScores.recency}/5`)),
        h('span', { class: 'score' }, 'Buys often ', h('b', {}, `${p.rfmScores.frequency}/5`)),
        h('span', { class: 'score' }, 'Spends a lot ', h('b', {}, `${p.rfmScores.monetary}/5`)),
      ),
    );
  } else {
    wrap.append(h('p', { class: 'empty' }, 'No purchase recorded yet.'));
  }

  if (p.recentTransitions.length) {
    wrap.append(h('h3', {}, 'Recent steps'));
    const ol = h('ol', { class: 'live' });
    for (const t of p.recentTransitions.slice(0, 8)) {
      ol.append(
        h('li', {}, `${stepVerb(t.to).replace(/^./, (c) => c.toUpperCase())} `, h('b', {}, t.topic), h('span', { class: 'when' }, ago(Date.parse(t.at)))),
      );
    }
    wrap.append(ol);
  }
  box.replaceChildren(wrap);
}

// --- start -------------------------------------------------------------------------------------

async function start(): Promise<void> {
  try {
    await loadTopics();
  } catch (err) {
    if (err instanceof Unauthorized) {
      askForKey(apiKey ? 'That key was not accepted. Check it and try again.' : undefined);
      return;
    }
    $('topics').replaceChildren(h('p', { class: 'error' }, `Could not load the topics: ${(err as Error).message}`));
    return;
  }
  $('keygate').hidden = true;
  showAccess(!apiKey);
  connectLive();
  await loadNeeds().catch(() => {});
}

function guard(p: Promise<void>): void {
  p.catch((err) => {
    if (err instanceof Unauthorized) askForKey('Your key is no longer accepted. Enter a valid one.');
  });
}

$('keyform').addEventListener('submit', (e) => {
  e.preventDefault();
  apiKey = $<HTMLInputElement>('keyinput').value.trim();
  sessionStorage.setItem(KEY_STORAGE, apiKey);
  guard(start());
});
$('window').addEventListener('change', () => guard(loadTopics()));
$('needsform').addEventListener('submit', (e) => {
  e.preventDefault();
  guard(loadNeeds());
});
$('needs-topic').addEventListener('change', () => guard(loadNeeds()));
$('needs-stage').addEventListener('change', () => guard(loadNeeds()));
$('needs-active').addEventListener('change', () => guard(loadNeeds()));
$('needs-more').addEventListener('click', () => guard(loadNeeds(true)));
$('needs-csv').addEventListener('click', () => guard(downloadCsv()));
$('personform').addEventListener('submit', (e) => {
  e.preventDefault();
  const id = $<HTMLInputElement>('person-id').value.trim();
  if (id) guard(lookUp(id));
});

guard(start());
