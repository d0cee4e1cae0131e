/**
 * The dashboard's person view in real headless Chromium against the all-in-one app (embedded
 * backends): a customer who viewed and bought two products, identified with allow-listed traits,
 * and rang the call centre with a complaint (a signal of the topic map) and an inquiry that was
 * settled; sixty other buyers, so that the CRM model job (every 10 s here) fits a lifetime-value
 * model and cross-selling has something to suggest. The page must show the traits (as text, never
 * HTML), each signal on its own dialogue, the RFM scores and the LTV the API gives, and what the
 * customer might buy next. A screenshot goes to test-artifacts/dashboard-person.png; any page error
 * fails the test.
 *
 * Needs Debian's chromium at /usr/bin/chromium (or CHROMIUM_PATH). No browser is downloaded.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import type { Person, Suggestions } from '../../contract/query.js';
import { DEFAULT_TOPIC_MAP, TopicMapConfig } from '../../history/fold/topic-map.js';
import { batch, eventually, post, startTestApp } from '../support/app.js';
import { launchChromium } from '../support/browser.js';

const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));
const KEY = 'dashboard-person-e2e-key-0123456789';
const WRITE_KEY = 'demo-write-key';
const DAY = 86_400_000;
const ADA = 'ada.l';
/** A trait value a sender could choose: it must show as these characters, not as an element. */
const HOSTILE = '<img src=x onerror="window.pwned=1">';

/** The demo shop's rules plus the call centre's (README "Voice of the customer"). */
const MAP = TopicMapConfig.parse({
  rules: [
    ...DEFAULT_TOPIC_MAP.rules,
    { channel: 'call', event: 'Complaint Filed', topic: 'product:{props.product}', stage: 'detail', signal: 'complaint' },
    { channel: 'call', event: 'Inquiry', topic: 'product:{props.product}', stage: 'detail', signal: 'inquiry' },
    { channel: 'call', event: 'Inquiry Resolved', topic: 'product:{props.product}', stage: 'detail', signal: 'inquiry', close: true },
  ],
  signals: { complaint: { weight: 100 }, inquiry: {} },
});

/** The one site, `demo`, as without INGEST_SITES, but allow-listing three traits (README "Traits"). */
function sitesFile(): string {
  const path = join(tmpdir(), `clickfold-sites-${randomUUID()}.json`);
  writeFileSync(path, JSON.stringify({ sites: [{ id: 'demo', origins: [], writeKeys: [WRITE_KEY], privacy: { traits: ['plan', 'seats', 'company'] } }] }));
  return path;
}

const page = (url: string, ts: number) => ({ type: 'page', url, ts });
const order = (sku: string, value: number, ts: number) => ({
  type: 'track',
  url: `/checkout/${sku}`,
  name: 'Order Completed',
  value,
  topic: `product:${sku}`,
  stage: 'purchase',
  ts,
});

/**
 * Sixty buyers over the last week (ingest keeps client times up to 7 days back): each bought
 * sku-1, most then sku-2 (so sku-2 is what sku-1's buyers go on to), some once more, with values
 * that vary: enough purchasers for the RFM quintiles (20) and the lifetime-value fit (50).
 */
function buyers(now: number): [string, Record<string, unknown>[]][] {
  const out: [string, Record<string, unknown>[]][] = [];
  for (let i = 0; i < 60; i++) {
    const first = now - (6.5 - (i % 13) * 0.4) * DAY;
    const repeats = i % 4;
    const value = 60 + ((i * 37) % 140);
    const events = [order('sku-1', value, first)];
    for (let k = 1; k <= repeats; k++) {
      const at = first + (((((i * 7) % 10) + 1) / 12) * (now - first) * 0.9 * k) / repeats;
      events.push(order(k === 1 ? 'sku-2' : 'sku-4', value, Math.round(at)));
    }
    out.push([`buyer-${String(i).padStart(2, '0')}`, events]);
  }
  return out;
}

/** Through the Segment-compatible API, as a CRM or call-centre system sends (the write key as basic-auth user). */
async function segment(url: string, events: Record<string, unknown>[]): Promise<void> {
  const r = await fetch(`${url}/v1/batch`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(`${WRITE_KEY}:`).toString('base64')}` },
    body: JSON.stringify({ batch: events.map((e) => ({ messageId: randomUUID(), ...e })) }),
  });
  expect(r.status, await r.clone().text()).toBe(200);
}

describe('dashboard person view in Chromium', () => {
  let app: RunningApp;
  let browser: Browser;
  let tab: Page;
  const errors: string[] = [];
  const auth = { authorization: `Bearer ${KEY}` };
  const api = async <T>(path: string): Promise<T> => {
    const r = await fetch(`${app.url}${path}`, { headers: auth });
    if (r.status !== 200) throw new Error(`${path}: ${r.status}`);
    return (await r.json()) as T;
  };

  beforeAll(async () => {
    [app, browser] = await Promise.all([
      startTestApp('embedded', { API_KEYS: KEY, INGEST_SITES: sitesFile(), CRM_MODEL_INTERVAL_S: '10', CRM_MODEL_SAMPLE: '1000' }, MAP),
      launchChromium(),
    ]);
    const now = Date.now();
    for (const [person, events] of buyers(now)) expect((await post(app.url, batch(person, events))).status).toBe(202);
    // Ada: looked at sku-1 and bought it two days ago, then sku-3 yesterday.
    const ada = [
      page('/products/sku-1', now - 2 * DAY - 60_000),
      page('/products/sku-1/specs', now - 2 * DAY - 30_000),
      order('sku-1', 129, now - 2 * DAY),
      page('/products/sku-3', now - DAY - 60_000),
      order('sku-3', 80, now - DAY),
    ];
    expect((await post(app.url, batch(ADA, ada))).status).toBe(202);
    await segment(app.url, [
      { type: 'identify', userId: ADA, traits: { plan: 'pro', seats: 12, company: HOSTILE, email: 'ada@example.com' } },
      { type: 'track', userId: ADA, event: 'Complaint Filed', properties: { product: 'sku-1', reason: 'late' }, context: { channel: 'call' } },
      { type: 'track', userId: ADA, event: 'Complaint Filed', properties: { product: 'sku-1', reason: 'broken' }, context: { channel: 'call' } },
      { type: 'track', userId: ADA, event: 'Inquiry', properties: { product: 'sku-3' }, context: { channel: 'call' } },
      { type: 'track', userId: ADA, event: 'Inquiry Resolved', properties: { product: 'sku-3' }, context: { channel: 'call' } },
    ]);
    const context = await browser.newContext({ viewport: { width: 1360, height: 1000 }, timezoneId: 'UTC', locale: 'en-GB' });
    tab = await context.newPage();
    // Uncaught exceptions in the page (the 401 before the key is given is the page's own business).
    tab.on('pageerror', (err) => errors.push(err.message));
  });

  afterAll(async () => {
    await browser?.close();
    await app?.stop();
  });

  it('folds the history and fits the CRM model', async () => {
    await eventually(
      async () => {
        const p = await api<Person>(`/v1/people/${ADA}`);
        const sku1 = p.dialogues.find((d) => d.topic === 'product:sku-1');
        const sku3 = p.dialogues.find((d) => d.topic === 'product:sku-3');
        return p.traits.plan === 'pro' && sku1?.signals.complaint?.count === 2 && sku3?.signals.inquiry?.open === false && p.rfm?.purchases === 2
          ? true
          : undefined;
      },
      20_000,
      'ada’s history folded',
    );
    // The model job runs every 10 s; the first after every buyer is folded fits the model.
    const model = await eventually(
      async () => {
        const m = await api<{ ltv: unknown; rfmScale: string; purchasers: number }>('/v1/crm/model');
        return m.ltv !== null && m.purchasers >= 61 ? m : undefined;
      },
      45_000,
      'the lifetime-value model fitted',
    );
    expect(model.rfmScale).toBe('quantiles');
    await eventually(
      async () => ((await api<Suggestions>(`/v1/people/${ADA}/suggestions`)).suggestions.some((s) => s.topic === 'product:sku-2') ? true : undefined),
      15_000,
      'a suggestion for ada',
    );
  }, 90_000);

  it('looks the person up: traits, signals per dialogue, RFM scores, LTV and what they might buy next', async () => {
    const p = await api<Person>(`/v1/people/${ADA}`);
    expect(p.traits).toEqual({ plan: 'pro', seats: 12, company: HOSTILE });
    expect(p.ltv.model).toBe('bg-nbd+gamma-gamma');
    expect(p.ltv.projected).not.toBeNull();
    expect(p.rfmScale).toBe('quantiles');

    await tab.goto(`${app.url}/dashboard`);
    await tab.locator('#keyinput').waitFor({ state: 'visible' });
    await tab.fill('#keyinput', KEY);
    await tab.click('#keyform button[type=submit]');
    await tab.locator('#keygate').waitFor({ state: 'hidden' });
    await tab.fill('#person-id', ADA);
    await tab.click('#personform button');
    await tab.locator('#person .person').waitFor();
    expect(await tab.locator('#person h3').first().textContent()).toBe(ADA);

    // Traits by name, with their values, the hostile one as text (no element made of it, nothing ran).
    expect(
      await tab.locator('#person table.traits tr').evaluateAll((rows) => rows.map((r) => [r.getAttribute('data-trait'), r.querySelector('td')?.textContent])),
    ).toEqual([
      ['company', HOSTILE],
      ['plan', 'pro'],
      ['seats', '12'],
    ]);
    expect(await tab.locator('#person img').count()).toBe(0);
    expect(await tab.evaluate(() => (globalThis as unknown as { pwned?: number }).pwned)).toBeUndefined();

    // Signals on the dialogue they were raised on; none on a dialogue without.
    const signals = (topic: string) => tab.locator(`#person table.dialogues tr[data-topic="${topic}"] td.signals .pill`).allTextContents();
    expect(await signals('product:sku-1')).toEqual(['complaint ×2 open']);
    expect(await signals('product:sku-3')).toEqual(['inquiry ×1 settled']);
    expect(await tab.locator('#person table.dialogues tr[data-topic="product:sku-1"] td.signals .pill.open').count()).toBe(1);
    expect(await tab.locator('#person table.dialogues thead th').allTextContents()).toContain('Signals');

    // RFM on the shop's quintiles, as the API scores them.
    const s = p.rfmScores!;
    expect(await tab.locator('#person .scores').getAttribute('data-scale')).toBe('quantiles');
    expect(await tab.locator('#person .scores').textContent()).toBe(`Bought recently ${s.recency}/5Buys often ${s.frequency}/5Spends a lot ${s.monetary}/5`);

    // Purchases and lifetime value: spent so far, and the projection over the horizon.
    const terms = await tab.locator('#person dl dt').allTextContents();
    const values = await tab.locator('#person dl dd').allTextContents();
    const shown = Object.fromEntries(terms.map((t, i) => [t, values[i]]));
    expect(shown.Purchases).toBe('2');
    expect(shown['Spent in total']).toBe((209).toLocaleString('en-GB'));
    expect(shown[`Expected in the next ${p.ltv.horizonDays} days`]).toBe(p.ltv.projected!.toLocaleString('en-GB'));
    expect(await tab.locator('#person dd.ltv').getAttribute('title')).toBe('BG/NBD and Gamma-Gamma, fitted to this shop’s purchasers');

    // What sku-1's buyers went on to buy.
    expect(await tab.locator('#person h3').allTextContents()).toEqual(expect.arrayContaining(['Traits', 'Purchases', 'Might buy next']));
    const next = await tab.locator('#person .next li').allTextContents();
    expect(next[0]).toMatch(/^product:sku-2 \(\d+ of \d+ who bought product:sku-1\)$/);

    await tab.locator('#person-section').scrollIntoViewIfNeeded();
    mkdirSync(ARTIFACTS, { recursive: true });
    await tab.screenshot({ path: `${ARTIFACTS}dashboard-person.png`, fullPage: true });
    expect(existsSync(`${ARTIFACTS}dashboard-person.png`)).toBe(true);
    expect(errors).toEqual([]);
  });
});
