/**
 * The dashboard in the browser: plain TypeScript and the DOM (and uPlot for the one time chart),
 * bundled by `npm run build` (build.ts) and served by route.ts. The API's shapes come from contract/query.ts as types only (nothing of
 * zod reaches the browser); what the page shows is worked out in figures.ts.
 * Every value from the API is untrusted (person ids and topics come from clicks), so text is only
 * ever set with textContent, never as HTML.
 */

import type {
  Audience,
  AudienceMembers,
  Audiences,
  ErrorBody,
  Funnel,
  FunnelFigures,
  Needs,
  Person,
  Stalled,
  StallRuleInfo,
  StallRules,
  Suggestions,
  TopicSummary,
  Topics,
  Trend,
} from '../../contract/query.js';
import type { AudienceEvent, StallEvent, Transition } from '../../contract/transition.js';
import {
  ago,
  backfillStatus,
  describeAudience,
  durationWords,
  funnelBox,
  fullDate,
  people,
  signalWords,
  STEP_HELP,
  stepName,
  stepVerb,
  topicFunnel,
  trendFigures,
  watches,
} from './figures.js';
import uPlot from 'uplot';

const KEY_STORAGE = 'clickfold-api-key';
const KEY_COOKIE = 'clickfold_key';
const STREAM = '/v1/transitions/stream';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const sel = (id: string) => $<HTMLSelectElement>(id);
const enc = encodeURIComponent;

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
class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}
/** The API's words for a read-only key speak of erasing; on the audience form, say what the key cannot do here. */
const READ_ONLY = 'This key may only read: making, changing or deleting an audience needs a key from API_KEYS.';

function setStreamCookie(key: string | null): void {
  // EventSource cannot send an Authorization header; the stream alone accepts this cookie.
  // biome-ignore lint/suspicious/noDocumentCookie: the one cookie the page sets, scoped to the stream's path
  document.cookie = key
    ? `${KEY_COOKIE}=${encodeURIComponent(key)}; path=${STREAM}; SameSite=Strict`
    : `${KEY_COOKIE}=; path=${STREAM}; SameSite=Strict; max-age=0`;
}

async function api(path: string, opts: { accept?: string; method?: string; body?: string } = {}): Promise<Response> {
  const headers: Record<string, string> = { accept: opts.accept ?? 'application/json' };
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  if (apiKey) headers.authorization = `Bearer ${apiKey}`;
  const res = await fetch(path, { method: opts.method ?? 'GET', headers, body: opts.body });
  if (res.status === 401) throw new Unauthorized();
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try {
      message = ((await res.json()) as ErrorBody).error.message;
    } catch {
      // keep the status line
    }
    throw new ApiError(res.status, message);
  }
  return res;
}
const getJson = async <T>(path: string): Promise<T> => (await (await api(path)).json()) as T;

/** A panel's own failure goes into the panel; a refused key goes up to `guard`, which asks again. */
function unlessUnauthorized(err: unknown): string {
  if (err instanceof Unauthorized) throw err;
  return err instanceof ApiError && err.status === 403 ? READ_ONLY : (err as Error).message;
}

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
  fillQuietControls();
  fillTrendControls();
}

let refreshTimer: number | undefined;
const dirty = { topics: false, needs: false, quiet: false, trend: false };
/**
 * Funnels, and the first page of the needs and gone-quiet lists when the event was about their
 * topic, follow the live feed, at most once a second (a list paged further with "Show more" stays
 * as it is, so nobody loses their place). A stall changes no funnel: it refreshes its list alone.
 */
function refreshSoon(topic: string, stage: boolean): void {
  if (stage) dirty.topics = true;
  if (stage && topic === sel('needs-topic').value) dirty.needs = true;
  if (topic === sel('quiet-topic').value) dirty.quiet = true;
  if (stage && topic === sel('trend-topic').value) dirty.trend = true;
  if (refreshTimer !== undefined) return;
  refreshTimer = window.setTimeout(() => {
    refreshTimer = undefined;
    const d = { ...dirty, needs: dirty.needs && !pagedMore, quiet: dirty.quiet && !quietPagedMore };
    Object.assign(dirty, { topics: false, needs: false, quiet: false, trend: false });
    (d.topics ? loadTopics() : Promise.resolve())
      .then(() => Promise.all([d.needs ? loadNeeds() : undefined, d.quiet ? loadQuiet() : undefined, d.trend ? loadTrend() : undefined]))
      .catch(() => {});
  }, 1000);
}

// --- over time ---------------------------------------------------------------------------------

/** One colour per stage, in ladder order (more stages than colours repeat them). */
const TREND_COLOURS = ['#2f6fde', '#b7791f', '#1f9d55', '#c53030', '#6b46c1', '#2c7a7b'];
const colourOf = (i: number) => TREND_COLOURS[i % TREND_COLOURS.length]!;
let trendChart: uPlot | null = null;

function fillTrendControls(): void {
  const topicSel = sel('trend-topic');
  const current = topicSel.value;
  topicSel.replaceChildren(...topics.map((t) => h('option', { value: t.topic }, t.topic)));
  if (topics.some((t) => t.topic === current)) topicSel.value = current;
  // The first topics to arrive, or the one shown gone: draw what the select now says.
  if (topicSel.value !== current || !trendChart) void loadTrend().catch(() => {});
}

const trendWidth = () => Math.max(280, $('trend-chart').clientWidth);

async function loadTrend(): Promise<void> {
  const topic = sel('trend-topic').value;
  const box = $('trend-chart');
  if (!topic) {
    trendChart?.destroy();
    trendChart = null;
    box.replaceChildren(h('p', { class: 'empty' }, 'Nothing to show yet: nobody has looked at anything.'));
    return;
  }
  const by = sel('trend-by').value === 'day' ? 'day' : 'hour';
  let t: Trend;
  try {
    t = await getJson<Trend>(`/v1/topics/${enc(topic)}/trend?by=${by}`);
  } catch (err) {
    $('trend-summary').textContent = `Could not load the trend: ${unlessUnauthorized(err)}`;
    return;
  }
  // A later choice may have answered first.
  if (topic !== sel('trend-topic').value || by !== sel('trend-by').value) return;
  const f = trendFigures(ladder, t);
  $('trend-summary').textContent = f.summary;
  $('trend-totals').replaceChildren(
    ...f.totals.map((x, i) => {
      const swatch = h('span', { class: 'swatch' });
      swatch.style.background = colourOf(i);
      return h('li', { 'data-stage': x.stage }, swatch, `${x.name}: `, h('b', {}, x.total.toLocaleString()));
    }),
  );
  box.dataset.topic = topic;
  box.dataset.by = by;
  const data: uPlot.AlignedData = [f.xs, ...f.ys];
  const same = trendChart && trendChart.series.length === f.ys.length + 1 && box.dataset.drawn === `${topic}|${by}`;
  if (same) {
    trendChart!.setData(data);
    return;
  }
  trendChart?.destroy();
  box.replaceChildren();
  trendChart = new uPlot(
    {
      width: trendWidth(),
      height: 220,
      series: [{}, ...ladder.map((s, i) => ({ label: stepName(s), stroke: colourOf(i), width: 2, points: { show: f.xs.length <= 60 } }))],
      scales: { y: { range: (_u, _min, max) => [0, Math.max(4, max)] } },
      axes: [{}, { size: 40, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000] }],
      legend: { show: true },
    },
    data,
    box,
  );
  box.dataset.drawn = `${topic}|${by}`;
}

window.addEventListener('resize', () => trendChart?.setSize({ width: trendWidth(), height: 220 }));

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

/** Fetched with the key (a plain link could not send it), then saved under the API's file name. */
async function downloadCsv(buttonId: string, path: string): Promise<void> {
  const button = $<HTMLButtonElement>(buttonId);
  button.disabled = true;
  try {
    const res = await api(path, { accept: 'text/csv' });
    const name = /filename="([^"]+)"/.exec(res.headers.get('content-disposition') ?? '')?.[1] ?? 'export.csv';
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

// --- gone quiet --------------------------------------------------------------------------------

/** The topic map's stall rules; null until `GET /v1/stalls` answered. */
let stallRules: StallRuleInfo[] | null = null;
let quietCursor: string | null = null;
let quietPagedMore = false;

async function loadStallRules(): Promise<void> {
  try {
    stallRules = (await getJson<StallRules>('/v1/stalls')).rules;
  } catch (err) {
    const none = $('quiet-none');
    none.hidden = false;
    none.textContent = `The stall rules could not be read: ${unlessUnauthorized(err)}`;
    return;
  }
  fillQuietControls();
}

function fillQuietControls(): void {
  if (stallRules === null) return;
  const none = stallRules.length === 0;
  $('quiet-none').hidden = !none;
  $('quiet-body').hidden = none;
  if (none) return;
  const rules = stallRules;
  const topicSel = sel('quiet-topic');
  // Until someone picks, the busiest topic a rule watches.
  const current = topicSel.value || topics.find((t) => rules.some((r) => watches(r.topics, t.topic)))?.topic;
  topicSel.replaceChildren(...topics.map((t) => h('option', { value: t.topic }, t.topic)));
  if (current && topics.some((t) => t.topic === current)) topicSel.value = current;
  const ruleSel = sel('quiet-rule');
  const currentRule = ruleSel.value;
  const watching = rules.filter((r) => watches(r.topics, topicSel.value));
  ruleSel.replaceChildren(...watching.map((r) => h('option', { value: r.name }, `${r.name}: quiet at “${stepName(r.stage)}” for ${durationWords(r.afterMs)}`)));
  if (watching.some((r) => r.name === currentRule)) ruleSel.value = currentRule;
  ruleSel.disabled = watching.length === 0;
  $<HTMLButtonElement>('quiet-csv').disabled = watching.length === 0;
}

const quietQuery = () => `/v1/topics/${enc(sel('quiet-topic').value)}/stalled?rule=${enc(sel('quiet-rule').value)}`;

function showQuietEmpty(text: string): void {
  $('quiet-table').hidden = true;
  $('quiet-more').hidden = true;
  $('quiet-summary').textContent = '';
  const e = $('quiet-empty');
  e.hidden = false;
  e.textContent = text;
}

async function loadQuiet(more = false): Promise<void> {
  if (!stallRules?.length) return;
  const topic = sel('quiet-topic').value;
  const rule = stallRules.find((r) => r.name === sel('quiet-rule').value);
  if (!topic) return showQuietEmpty('Nothing to show yet: nobody has looked at anything.');
  if (!rule) return showQuietEmpty(`No stall rule watches ${topic}: the rules watch ${stallRules.map((r) => r.topics).join(', ')}.`);
  let page: Stalled;
  try {
    page = await getJson<Stalled>(quietQuery() + (more && quietCursor ? `&cursor=${enc(quietCursor)}` : ''));
  } catch (err) {
    return showQuietEmpty(`Could not load the list: ${unlessUnauthorized(err)}`);
  }
  quietCursor = page.nextCursor;
  quietPagedMore = more;
  const rows = $('quiet-rows');
  if (!more) rows.replaceChildren();
  if (page.total === 0) {
    return showQuietEmpty(`Nobody has gone quiet at “${stepName(rule.stage)}” of ${topic} for ${durationWords(rule.afterMs)} or more right now.`);
  }
  $('quiet-empty').hidden = true;
  $('quiet-table').hidden = false;
  for (const s of page.stalled) {
    const since = Date.parse(s.since);
    const at = Date.parse(s.at);
    rows.append(
      h(
        'tr',
        { 'data-person': s.person },
        h('td', {}, personLink(s.person)),
        h('td', {}, h('span', { class: 'pill' }, stepName(s.stage))),
        h('td', { title: fullDate(since) }, ago(since)),
        h('td', { title: fullDate(at) }, ago(at)),
      ),
    );
  }
  $('quiet-summary').textContent =
    `${people(page.total)} stopped at “${stepName(rule.stage)}” of ${topic} and clicked nothing for ${durationWords(rule.afterMs)} or more. Most recently gone quiet first.`;
  $('quiet-more').hidden = !quietCursor;
}

// --- audiences ---------------------------------------------------------------------------------

let audiences: Audience[] = [];
/** The audience whose members are shown. */
let shownAudience: string | null = null;
let memberCursor: string | null = null;
let membersPagedMore = false;
let audiencesTimer: number | undefined;
let membersDirty = false;

/**
 * Reloads the list (counts, backfills) at most once a second; and while a backfill runs, again
 * until it is done, so its progress moves without events.
 */
function audiencesSoon(members = false): void {
  if (members) membersDirty = true;
  if (audiencesTimer !== undefined) return;
  audiencesTimer = window.setTimeout(() => {
    audiencesTimer = undefined;
    const m = membersDirty && !membersPagedMore;
    membersDirty = false;
    guard(loadAudiences().then(() => (m ? loadMembers() : undefined)));
  }, 1000);
}

async function loadAudiences(): Promise<void> {
  const note = $('aud-unavailable');
  try {
    audiences = (await getJson<Audiences>('/v1/audiences')).audiences;
  } catch (err) {
    note.hidden = false;
    note.textContent = `Audiences are not available: ${unlessUnauthorized(err)}`;
    $('aud-table').hidden = true;
    $('audform').hidden = true;
    return;
  }
  note.hidden = true;
  $('audform').hidden = false;
  $('aud-table').hidden = audiences.length === 0;
  $('aud-empty').hidden = audiences.length > 0;
  $('aud-rows').replaceChildren(...audiences.map(audienceRow));
  if (shownAudience !== null && !audiences.some((a) => a.name === shownAudience)) {
    shownAudience = null;
    $('aud-members-box').hidden = true;
  }
  if (audiences.some((a) => a.backfill?.state === 'running')) audiencesSoon(true);
}

function audienceRow(a: Audience): HTMLElement {
  const status = backfillStatus(a.backfill);
  const statusCell = h(
    'td',
    { class: status.failed ? 'error' : undefined, title: a.backfill?.finishedAt ? `Checked ${fullDate(Date.parse(a.backfill.finishedAt))}` : undefined },
    status.text,
  );
  if (status.progress !== null) {
    const bar = h('span');
    bar.style.width = `${status.progress}%`;
    statusCell.append(h('div', { class: 'progress' }, bar));
  }
  const name = h('button', { type: 'button', class: 'link', title: 'Show who is in it' }, a.name);
  name.addEventListener('click', () => {
    shownAudience = a.name;
    guard(loadMembers());
  });
  const actions = h('td', { class: 'actions' });
  if (a.source === 'api') {
    const edit = h('button', { type: 'button', class: 'secondary', 'data-action': 'edit' }, 'Change');
    edit.addEventListener('click', () => {
      $<HTMLInputElement>('aud-name').value = a.name;
      $<HTMLTextAreaElement>('aud-def').value = JSON.stringify(a.definition, null, 2);
      $('audform').scrollIntoView({ behavior: 'smooth', block: 'nearest' });
    });
    const del = h('button', { type: 'button', class: 'secondary', 'data-action': 'delete' }, 'Delete');
    del.addEventListener('click', () => guard(deleteAudience(a.name)));
    actions.append(edit, del);
  } else {
    actions.append(h('span', { class: 'what' }, 'from the audiences file'));
  }
  return h(
    'tr',
    { 'data-audience': a.name, class: a.name === shownAudience ? 'selected' : undefined },
    h('td', {}, name, h('span', { class: 'what' }, describeAudience(a.definition))),
    h('td', { class: 'num', 'data-members': String(a.members) }, a.members.toLocaleString()),
    statusCell,
    actions,
  );
}

async function loadMembers(more = false): Promise<void> {
  const name = shownAudience;
  if (name === null) return;
  for (const tr of $('aud-rows').children) tr.classList.toggle('selected', tr.getAttribute('data-audience') === name);
  const box = $('aud-members-box');
  box.hidden = false;
  box.dataset.audience = name;
  $('aud-members-title').textContent = `Who is in “${name}”`;
  let page: AudienceMembers;
  try {
    page = await getJson<AudienceMembers>(`/v1/audiences/${enc(name)}/members${more && memberCursor ? `?cursor=${enc(memberCursor)}` : ''}`);
  } catch (err) {
    $('aud-members').hidden = true;
    $('aud-more').hidden = true;
    $('aud-members-summary').textContent = `Could not load the members: ${unlessUnauthorized(err)}`;
    return;
  }
  if (name !== shownAudience) return;
  memberCursor = page.nextCursor;
  membersPagedMore = more;
  const rows = $('aud-member-rows');
  if (!more) rows.replaceChildren();
  for (const m of page.members) {
    const at = Date.parse(m.enteredAt);
    rows.append(h('tr', { 'data-person': m.person }, h('td', {}, personLink(m.person)), h('td', { title: fullDate(at) }, ago(at))));
  }
  $('aud-members').hidden = page.total === 0;
  $('aud-members-summary').textContent = page.total === 0 ? 'Nobody is in it right now.' : `${people(page.total)} in it now. Most recent first.`;
  $('aud-more').hidden = !memberCursor;
}

async function saveAudience(): Promise<void> {
  const name = $<HTMLInputElement>('aud-name').value.trim();
  const error = $('aud-error');
  const saved = $('aud-saved');
  const button = $('audform').querySelector('button[type=submit]') as HTMLButtonElement;
  error.hidden = true;
  saved.hidden = true;
  button.disabled = true;
  try {
    // The definition goes as typed: the API checks it and says what is wrong, and where.
    const res = await api(`/v1/audiences/${enc(name)}`, { method: 'PUT', body: $<HTMLTextAreaElement>('aud-def').value });
    const a = (await res.json()) as Audience;
    saved.hidden = false;
    saved.textContent = `Saved “${a.name}”${res.status === 201 ? '' : ` (version ${a.version})`}. Everyone who qualifies is being added: the status column shows how far it got.`;
    shownAudience = a.name;
  } catch (err) {
    error.hidden = false;
    error.textContent = unlessUnauthorized(err);
    return;
  } finally {
    button.disabled = false;
  }
  await loadAudiences();
  await loadMembers();
}

async function deleteAudience(name: string): Promise<void> {
  if (!confirm(`Delete the audience “${name}”? Its members are forgotten; nobody is told they left.`)) return;
  try {
    await api(`/v1/audiences/${enc(name)}`, { method: 'DELETE' });
  } catch (err) {
    const error = $('aud-error');
    error.hidden = false;
    error.textContent = `Could not delete “${name}”: ${unlessUnauthorized(err)}`;
    return;
  }
  await loadAudiences();
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
    refreshSoon(t.topic, true);
  });
  source.addEventListener('stalled', (e) => {
    const s = JSON.parse((e as MessageEvent<string>).data) as StallEvent;
    addQuiet(s);
    refreshSoon(s.topic, false);
  });
  const audienceChange = (e: Event) => {
    const a = JSON.parse((e as MessageEvent<string>).data) as AudienceEvent;
    audiencesSoon(a.audience === shownAudience);
  };
  source.addEventListener('entered', audienceChange);
  source.addEventListener('exited', audienceChange);
  source.addEventListener('error', () => {
    status.textContent = 'reconnecting…';
    status.className = 'status off';
  });
}

/** Transitions on the list, by id: the stream may bring one the first load already showed. */
const shown = new Set<string>();

/** "Happening now" opens with the latest transitions, below any the stream brought meanwhile, newest first. */
async function loadRecent(): Promise<void> {
  const { transitions } = await getJson<{ transitions: Transition[] }>('/v1/transitions/recent?limit=20');
  const list = $('live');
  for (const t of transitions) addLive(t, false);
  const items = [...list.children] as HTMLElement[];
  const at = (li: HTMLElement) => Number(li.querySelector<HTMLElement>('.when')?.dataset.at ?? 0);
  list.replaceChildren(...items.sort((a, b) => at(b) - at(a)).slice(0, 50));
}

function addLive(t: Transition, fresh = true): void {
  if (shown.has(t.id)) return;
  shown.add(t.id);
  const when = h('span', { class: 'when', 'data-at': String(t.at), title: fullDate(t.at) }, `${ago(t.at)} · ${t.channel}`);
  prependLive(
    h(
      'li',
      { class: fresh ? 'fresh' : undefined, 'data-person': t.person, 'data-topic': t.topic, 'data-to': t.to },
      personLink(t.person),
      ` ${stepVerb(t.to)} `,
      h('b', {}, t.topic),
      when,
    ),
  );
}

function addQuiet(s: StallEvent): void {
  const when = h('span', { class: 'when', 'data-at': String(s.at), title: fullDate(s.at) }, `${ago(s.at)} · quiet since ${fullDate(s.since)}`);
  prependLive(
    h(
      'li',
      { class: 'fresh quiet', 'data-person': s.person, 'data-topic': s.topic, 'data-stalled': s.rule },
      personLink(s.person),
      ` went quiet at “${stepName(s.stage)}” of `,
      h('b', {}, s.topic),
      when,
    ),
  );
}

function prependLive(li: HTMLElement): void {
  const list = $('live');
  $('live-empty').hidden = true;
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
  // Asked at once, shown when there: a person without suggestions is still worth showing.
  const next = getJson<Suggestions>(`/v1/people/${encodeURIComponent(id)}/suggestions`).catch(() => null);
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
  // Identify traits the site allow-lists, by name: names and values as sent, so text nodes only.
  const traits = Object.entries(p.traits).sort(([a], [b]) => (a < b ? -1 : 1));
  if (traits.length) {
    const rows = h('tbody');
    for (const [name, v] of traits) rows.append(h('tr', { 'data-trait': name }, h('th', {}, name), h('td', {}, String(v))));
    wrap.append(h('h3', {}, 'Traits'), h('table', { class: 'table traits' }, rows));
  }

  const signals = p.dialogues.some((d) => Object.keys(d.signals).length > 0);
  const table = h(
    'table',
    { class: 'table dialogues' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        h('th', {}, 'Interested in'),
        h('th', {}, 'Got as far as'),
        h('th', {}, 'Last seen'),
        h('th', {}, 'Channels'),
        signals && h('th', {}, 'Signals'),
      ),
    ),
  );
  const body = h('tbody');
  for (const d of p.dialogues) {
    body.append(
      h(
        'tr',
        { 'data-topic': d.topic },
        h('td', {}, d.topic),
        h('td', {}, h('span', { class: 'pill' }, stepName(d.stage))),
        h('td', { title: fullDate(Date.parse(d.lastActivity)) }, ago(Date.parse(d.lastActivity))),
        h('td', {}, d.channels.join(', ')),
        signals && h('td', { class: 'signals' }, ...signalWords(d.signals).map((w) => h('span', { class: w.endsWith('open') ? 'pill open' : 'pill' }, w))),
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
        h('dt', {}, `Expected in the next ${p.ltv.horizonDays} days`),
        h(
          'dd',
          { class: 'ltv', title: p.ltv.model ? 'BG/NBD and Gamma-Gamma, fitted to this shop’s purchasers' : '' },
          p.ltv.projected !== null ? p.ltv.projected.toLocaleString() : p.ltv.model ? 'outside the model' : 'not enough purchasers yet',
        ),
      ),
      h(
        'div',
        {
          class: 'scores',
          'data-scale': p.rfmScale,
          title:
            p.rfmScale === 'quantiles'
              ? 'Scores from 1 (weakest) to 5 (strongest): the fifth of this shop’s purchasers the person stands in'
              : 'Scores from 1 (weakest) to 5 (strongest), on fixed thresholds (too few purchasers yet for the shop’s own)',
        },
        h('span', { class: 'score' }, 'Bought recently ', h('b', {}, `${p.rfmScores.recency}/5`)),
        h('span', { class: 'score' }, 'Buys often ', h('b', {}, `${p.rfmScores.frequency}/5`)),
        h('span', { class: 'score' }, 'Spends a lot ', h('b', {}, `${p.rfmScores.monetary}/5`)),
      ),
    );
  } else {
    wrap.append(h('p', { class: 'empty' }, 'No purchase recorded yet.'));
  }

  const ideas = (await next)?.suggestions ?? [];
  if (ideas.length) {
    wrap.append(h('h3', {}, 'Might buy next'));
    const ul = h('ul', { class: 'next' });
    for (const x of ideas) {
      const why = x.support.map((s) => `${s.error ? '≈' : ''}${s.count} of ${s.buyers} who bought ${s.from}`).join('; ');
      ul.append(h('li', { 'data-topic': x.topic }, h('b', {}, x.topic), ` (${why})`));
    }
    wrap.append(ul);
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
  await Promise.all([loadRecent().catch(() => {}), loadNeeds().catch(() => {}), loadStallRules().then(() => loadQuiet()), loadAudiences()]);
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
$('trend-topic').addEventListener('change', () => guard(loadTrend()));
$('trend-by').addEventListener('change', () => guard(loadTrend()));
$('trendform').addEventListener('submit', (e) => e.preventDefault());
$('needsform').addEventListener('submit', (e) => {
  e.preventDefault();
  guard(loadNeeds());
});
$('needs-topic').addEventListener('change', () => guard(loadNeeds()));
$('needs-stage').addEventListener('change', () => guard(loadNeeds()));
$('needs-active').addEventListener('change', () => guard(loadNeeds()));
$('needs-more').addEventListener('click', () => guard(loadNeeds(true)));
$('needs-csv').addEventListener('click', () => guard(downloadCsv('needs-csv', needsQuery())));
$('quiet-topic').addEventListener('change', () => {
  fillQuietControls();
  guard(loadQuiet());
});
$('quiet-rule').addEventListener('change', () => guard(loadQuiet()));
$('quietform').addEventListener('submit', (e) => e.preventDefault());
$('quiet-more').addEventListener('click', () => guard(loadQuiet(true)));
$('quiet-csv').addEventListener('click', () => guard(downloadCsv('quiet-csv', `${quietQuery()}&format=csv`)));
$('aud-more').addEventListener('click', () => guard(loadMembers(true)));
$('audform').addEventListener('submit', (e) => {
  e.preventDefault();
  guard(saveAudience());
});
$('personform').addEventListener('submit', (e) => {
  e.preventDefault();
  const id = $<HTMLInputElement>('person-id').value.trim();
  if (id) guard(lookUp(id));
});

guard(start());
