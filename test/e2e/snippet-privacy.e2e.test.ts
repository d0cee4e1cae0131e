/**
 * The tracker snippet in Chromium: consent, cookie storage, Do-Not-Track, hostile pages, signed identify.
 * The harness and its helpers: test/support/snippet-harness.ts.
 */
import { describe, expect, it } from 'vitest';
import { SIGNED_SITE, signUserId, sleep, useSnippetHarness } from '../support/snippet-harness.js';

describe('tracker snippet in Chromium: consent, storage, hostile pages, signed identify', () => {
  const { h, records, arrived, expectNoDuplicates, open, loaded, storage, confirmed, push } = useSnippetHarness();

  it('with consent required sends and stores nothing until consent, and forgets everything on withdrawal', async () => {
    const site = 'e2e-consent';
    const { page } = await open(`/fixture/consent?site=${site}&consent=required`);
    await page.click('#choose');
    await page.evaluate(`history.pushState({}, '', '/fixture/consent/2' + location.search)`);
    await push(page, ['track', 'Before consent'], ['identify', 'user-1']);
    await sleep(2500);
    expect(records(site)).toEqual([]);
    expect(h.posts.filter((p) => p.site === site)).toEqual([]);
    expect(await storage(page)).toEqual({ local: {}, cookie: '' });

    // Consent: what happened on this page is sent, the ids are stored.
    await push(page, ['consent', true]);
    const sent = await arrived(site, 5);
    expect(sent.map((r) => r.type)).toEqual(['page', 'click', 'page', 'track', 'identify']);
    expect(sent.every((r) => r.user === 'user-1')).toBe(true);
    // visitor|session|last activity|user|signature (none given here).
    expect((await storage(page)).local.clickfold).toMatch(/^\d+\|\d+\|\d+\|user-1\|$/);

    // Withdrawal: ids and queue gone, nothing more is sent, also not on the next page.
    await push(page, ['consent', false]);
    expect(await storage(page)).toEqual({ local: {}, cookie: '' });
    await push(page, ['track', 'After withdrawal']);
    await page.reload();
    await loaded(page);
    await page.click('#plain');
    await sleep(2500);
    expect(records(site)).toHaveLength(5);
    expect(await storage(page)).toEqual({ local: {}, cookie: '' });
  });

  it('keeps the visitor id in a first-party cookie with data-storage="cookie"', async () => {
    const site = 'e2e-cookie';
    const { page } = await open(`/fixture/cookie?site=${site}&storage=cookie&consent=required`);
    await push(page, ['consent', true]);
    const [first] = await arrived(site, 1, () => true, 0);
    const { local, cookie } = await storage(page);
    expect(cookie).toMatch(new RegExp(`^clickfold=${first!.visitor}\\|`));
    expect(local.clickfold).toBeUndefined();

    await page.goto(`${h.url}/fixture/cookie/2?site=${site}&storage=cookie&consent=required`);
    const pages = await arrived(site, 2, (r) => r.type === 'page');
    // Consent given once is remembered by the stored id; the same visitor on the next page.
    expect(pages[1]!.visitor).toBe(first!.visitor);
  });

  it('honours Do-Not-Track and Global Privacy Control with data-dnt="respect"', async () => {
    const dnt = `Object.defineProperty(Navigator.prototype, 'doNotTrack', { get: () => '1' });`;
    const gpc = `Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true });`;
    for (const [site, init] of [
      ['e2e-dnt', dnt],
      ['e2e-gpc', gpc],
    ] as const) {
      const { page } = await open(`/fixture/dnt?site=${site}&dnt=respect`, init);
      await page.click('#choose');
      await push(page, ['consent', true], ['track', 'Ignored']);
      await sleep(2000);
      expect(records(site)).toEqual([]);
      expect(await storage(page)).toEqual({ local: {}, cookie: '' });
    }
    // Without the option the signal is not honoured.
    await open(`/fixture/dnt?site=e2e-dnt-ignored`, dnt);
    await arrived('e2e-dnt-ignored', 1, () => true, 0);
  });

  it('works on a hostile page (throwing scripts, no storage) and throws nothing into it', async () => {
    // localStorage and document.cookie throw on every access, as in locked-down embeds.
    const noStorage = `
      Object.defineProperty(window, 'localStorage', { get() { throw new DOMException('storage is disabled', 'SecurityError'); } });
      Object.defineProperty(Document.prototype, 'cookie', {
        get() { throw new DOMException('cookies are disabled', 'SecurityError'); },
        set() { throw new DOMException('cookies are disabled', 'SecurityError'); },
      });`;
    for (const storageOption of ['local', 'cookie']) {
      const site = `e2e-hostile-${storageOption}`;
      const { page, errors } = await open(`/fixture/hostile?site=${site}&hostile=1&storage=${storageOption}`, noStorage);
      await page.click('#boom');
      expect(await page.textContent('#boom')).toBe('clicked');
      // The page's own history errors still reach the page.
      const own = await page.evaluate(
        `(() => { try { history.pushState({}, '', 'https://elsewhere.example/'); return 'no error'; } catch (e) { return e.name; } })()`,
      );
      expect(own).toBe('SecurityError');
      await page.evaluate(`history.pushState({}, '', '/fixture/hostile/2')`);
      await page.click('#choose');

      const got = await arrived(site, 5);
      expect(got.map((r) => r.type)).toEqual(['page', 'track', 'click', 'page', 'click']);
      expect(got[1]).toMatchObject({ name: 'Circular', props: { a: 1 } });
      expect(got[1]!.value).toBeUndefined();
      expect(got[2]).toMatchObject({ el: { id: 'boom' } });
      expect(new Set(got.map((r) => r.visitor)).size).toBe(1);
      // Only the page's own errors; none from the snippet.
      expect(errors).toEqual(['page boom 1', 'page boom 2']);
      expectNoDuplicates(site);
    }
  });

  it('sends a signed identify and the signature with every batch, across pages; an unsigned one stays anonymous', async () => {
    const site = SIGNED_SITE;
    const { page, errors } = await open(`/fixture/signed?site=${site}`);
    await arrived(site, 1, (r) => r.type === 'page', 0);
    await confirmed(page);

    // Unsigned, then wrongly signed: ingest refuses both identifies, and the events stay the visitor's.
    await push(page, ['identify', 'user-7'], ['track', 'Before signing']);
    await confirmed(page);
    await push(page, ['identify', 'user-7', signUserId('user-8')], ['track', 'Wrongly signed']);
    await confirmed(page);
    const anonymous = await arrived(site, 2, (r) => r.type === 'track', 500);
    expect(anonymous.map((r) => [r.name, r.user, r.person === r.visitor])).toEqual([
      ['Before signing', undefined, true],
      ['Wrongly signed', undefined, true],
    ]);
    expect(records(site).filter((r) => r.type === 'identify')).toEqual([]);

    // The same user again, now signed: a new identify goes out, and every later batch carries the signature.
    await push(page, ['identify', 'user-7', signUserId('user-7')], ['track', 'Signed']);
    const [identify] = await arrived(site, 1, (r) => r.type === 'identify', 0);
    expect(identify).toMatchObject({ user: 'user-7', person: 'user-7', visitor: anonymous[0]!.visitor });
    const [signed] = await arrived(site, 1, (r) => r.name === 'Signed', 0);
    expect(signed).toMatchObject({ user: 'user-7', person: 'user-7' });
    await confirmed(page);
    expect((await storage(page)).local.clickfold).toBe(`${anonymous[0]!.visitor}|${signed!.session}|${signed!.ts}|user-7|${signUserId('user-7')}`);
    // Sent as the snippet sends it: on the identify event and on the batch, never stored on the raw log.
    const sent = h.posts.filter((p) => p.site === site && p.ids.includes(identify!.id));
    expect(sent.map((p) => [p.user, p.sig, p.eventSigs[p.ids.indexOf(identify!.id)]])).toEqual([['user-7', signUserId('user-7'), signUserId('user-7')]]);
    expect(JSON.stringify(records(site))).not.toContain(signUserId('user-7'));

    // The next page load remembers the user and its signature.
    await page.click('#link');
    await page.waitForURL(/\/fixture\/next/);
    await loaded(page);
    const [nextPage] = await arrived(site, 1, (r) => r.type === 'page' && r.url!.includes('/fixture/next'), 0);
    expect(nextPage).toMatchObject({ user: 'user-7', person: 'user-7' });
    // The link click left with the beacon on page hide, signed too.
    expect(records(site).find((r) => r.type === 'click')).toMatchObject({ user: 'user-7', person: 'user-7', el: { id: 'link' } });
    expect(records(site).filter((r) => r.type === 'identify')).toHaveLength(1);
    expectNoDuplicates(site);
    expect(errors).toEqual([]);
  });
});
