/**
 * The tracker snippet in Chromium: page views, clicks, and delivery (offline, 503, next page, sendBeacon).
 * The harness and its helpers: test/support/snippet-harness.ts.
 */
import { describe, expect, it } from 'vitest';
import { eventually } from '../support/app.js';
import { sleep, useSnippetHarness } from '../support/snippet-harness.js';

describe('tracker snippet in Chromium: what it sends, and that it arrives once', () => {
  const { h, records, arrived, expectNoDuplicates, open, loaded, storage, confirmed, push } = useSnippetHarness();

  it('counts page views and SPA navigations once each, and not fragment or same-URL changes', async () => {
    const site = 'e2e-spa';
    const { page, errors } = await open(`/fixture/app?site=${site}`, `window.globalsBefore = new Set(Object.getOwnPropertyNames(window));`);
    const base = `${h.url}/fixture/app`;
    await page.evaluate(`history.pushState({}, '', '/fixture/app/a')`);
    await page.evaluate(`history.replaceState({ v: 2 }, '', location.href)`);
    await page.evaluate(`history.pushState({}, '', '#section')`);
    await page.evaluate(`history.replaceState({}, '', '/fixture/app/b')`);
    await page.evaluate(`history.back()`);
    await page.waitForURL(`${base}/a`);
    await page.evaluate(`history.back()`);
    await page.waitForURL(`${base}?site=${site}`);

    const pages = await arrived(site, 5, (r) => r.type === 'page');
    expect(pages.map((r) => r.url)).toEqual([`${base}?site=${site}`, `${base}/a`, `${base}/b`, `${base}/a`, `${base}?site=${site}`]);
    // A fragment change is no page view, so it does not become the next view's referrer either.
    expect(pages.map((r) => r.ref)).toEqual([undefined, `${base}?site=${site}`, `${base}/a`, `${base}/b`, `${base}/a`]);
    expect(pages[0]!.title).toBe('Fixture /fixture/app');
    // One visitor, one session, distinct event ids.
    expect(new Set(pages.map((r) => r.visitor)).size).toBe(1);
    expect(new Set(pages.map((r) => r.session)).size).toBe(1);
    expectNoDuplicates(site);
    expect(errors).toEqual([]);
    // One global name: nothing else was added to the page.
    const added = await page.evaluate(`Object.getOwnPropertyNames(window).filter((k) => !globalsBefore.has(k) && k !== 'globalsBefore')`);
    expect(added).toEqual(['clickfold']);
  });

  it('reports clicks on hinted elements, buttons and links with their element context', async () => {
    const site = 'e2e-click';
    const { page, errors } = await open(`/fixture/click?site=${site}`);
    await page.click('#choose');
    await page.click('#inner');
    await page.click('#plain');
    await page.click('#nothing');

    const clicks = await arrived(site, 3, (r) => r.type === 'click');
    expect(clicks).toHaveLength(3);
    const [choose, basic, plain] = clicks;
    expect(choose).toMatchObject({
      topic: 'plan:pro',
      stage: 'detail',
      url: `${h.url}/fixture/click?site=${site}`,
      el: { tag: 'button', id: 'choose', cls: 'btn big', text: 'Choose Pro', sel: 'button#choose', data: { campaign: 'spring', variant: 'b' } },
    });
    // A click inside a hinted element reports the hinted element.
    expect(basic).toMatchObject({ topic: 'plan:basic', stage: 'intro', el: { tag: 'section', id: 'basic', text: 'The basic plan', sel: 'section#basic' } });
    expect(basic!.el?.data).toBeUndefined();
    expect(plain).toMatchObject({ el: { tag: 'button', id: 'plain', text: 'Plain button' } });
    expect(plain!.topic).toBeUndefined();
    expect(plain!.stage).toBeUndefined();
    // Sent with fetch as text/plain (no preflight); ingest accepted every batch.
    const sent = h.posts.filter((p) => p.site === site);
    expect(sent.every((p) => p.mode === 'cors' && p.contentType?.startsWith('text/plain') && p.status === 202)).toBe(true);
    expectNoDuplicates(site);
    expect(errors).toEqual([]);
  });

  it('keeps events while the network is down and sends them exactly once when it returns', async () => {
    const site = 'e2e-offline';
    const { page, context } = await open(`/fixture/offline?site=${site}`);
    await arrived(site, 1, (r) => r.type === 'page', 0);
    await confirmed(page);

    await context.setOffline(true);
    await push(page, ['track', 'Offline 1'], ['track', 'Offline 2', { n: 2 }], ['track', 'Offline 3', {}, 3]);
    await page.click('#choose');
    await sleep(2500);
    expect(records(site).filter((r) => r.type !== 'page')).toEqual([]);
    const queued = JSON.parse((await storage(page)).local.clickfold_q ?? '[]') as { id: string; type: string }[];
    expect(queued.map((e) => e.type)).toEqual(['track', 'track', 'track', 'click']);

    await context.setOffline(false);
    const late = await arrived(site, 4, (r) => r.type !== 'page', 2500);
    expect(late.map((r) => r.id).sort()).toEqual(queued.map((e) => e.id).sort());
    expect(late.find((r) => r.name === 'Offline 3')?.value).toBe(3);
    expectNoDuplicates(site);
    expect((await storage(page)).local.clickfold_q).toBeUndefined();
  });

  it('retries when ingest answers 503 (honouring Retry-After) and delivers each event once', async () => {
    const site = 'e2e-503';
    const { page } = await open(`/fixture/retry?site=${site}`);
    await arrived(site, 1, (r) => r.type === 'page', 0);
    await confirmed(page);

    h.setOutage('kafka');
    // Ten events make a full batch: sent at once, answered 503.
    await push(page, ...Array.from({ length: 12 }, (_, i) => ['track', `Retry ${i}`]));
    await eventually(async () => (h.posts.some((p) => p.site === site && p.status === 503) ? true : undefined), 10_000, 'a 503');
    expect(records(site).filter((r) => r.type === 'track')).toEqual([]);
    const stored = JSON.parse((await storage(page)).local.clickfold_q ?? '[]') as unknown[];
    expect(stored).toHaveLength(12);

    h.setOutage('none');
    const tracks = await arrived(site, 12, (r) => r.type === 'track', 2500);
    expect(tracks.map((r) => r.name).sort()).toEqual(Array.from({ length: 12 }, (_, i) => `Retry ${i}`).sort());
    expectNoDuplicates(site);
    // The first answered attempt came about a second (Retry-After: 1) after the 503, not in a tight loop.
    const attempts = h.posts.filter((p) => p.site === site && p.status === 503).length;
    expect(attempts).toBeLessThan(5);
  });

  it('sends events a page could not deliver on the next page load', async () => {
    const site = 'e2e-nextload';
    const { page } = await open(`/fixture/next?site=${site}`);
    await arrived(site, 1, (r) => r.type === 'page', 0);
    await confirmed(page);

    h.setOutage('http'); // 503 with Retry-After: 600: this page will not retry in time
    await push(page, ['track', 'Left behind 1'], ['track', 'Left behind 2']);
    await eventually(async () => (h.posts.some((p) => p.site === site && p.status === 503) ? true : undefined), 10_000, 'a 503');
    h.setOutage('none');
    await page.reload();
    await loaded(page);

    const tracks = await arrived(site, 2, (r) => r.type === 'track', 2500);
    expect(tracks.map((r) => r.name)).toEqual(['Left behind 1', 'Left behind 2']);
    expect(records(site).filter((r) => r.type === 'page')).toHaveLength(2);
    expectNoDuplicates(site);
  });

  it('sends what waits with sendBeacon when the page is left, once', async () => {
    const site = 'e2e-hide';
    const { page } = await open(`/fixture/hide?site=${site}`);
    await arrived(site, 1, (r) => r.type === 'page', 0);
    await confirmed(page);

    // Queued (the 1 s flush has not fired) when the link click navigates away.
    await push(page, ['track', 'Just before leaving']);
    await page.click('#link');
    await page.waitForURL(/\/fixture\/next/);
    await loaded(page);

    const found = await arrived(site, 4, () => true, 2500);
    expect(found.map((r) => r.type)).toEqual(['page', 'track', 'click', 'page']);
    expect(found[2]).toMatchObject({ el: { tag: 'a', id: 'link', href: `${h.url}/fixture/next?site=${site}` } });
    const track = found[1]!;
    const beacon = h.posts.find((p) => p.ids.includes(track.id));
    expect(beacon?.mode).toBe('no-cors'); // navigator.sendBeacon
    expectNoDuplicates(site);

    // Closing the tab works the same way.
    await push(page, ['track', 'Closing']);
    await page.close({ runBeforeUnload: true });
    const closing = await arrived(site, 1, (r) => r.name === 'Closing', 1000);
    expect(closing).toHaveLength(1);
    expectNoDuplicates(site);
  });
});
