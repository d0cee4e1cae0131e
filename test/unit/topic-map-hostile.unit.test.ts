import { describe, expect, it } from 'vitest';
import { transitionId } from '../../history/fold/fold.js';
import { keys } from '../../history/store/store.js';
import {
  compileTopicMap,
  DEFAULT_TOPIC_MAP,
  normaliseTopic,
  safeDecode,
  TOPIC_MAX_LENGTH,
  TopicMapConfig,
  type Classifiable,
} from '../../history/fold/topic-map.js';

const demo = compileTopicMap(DEFAULT_TOPIC_MAP);
const page = (url: string, extra: Partial<Classifiable> = {}): Classifiable => ({ channel: 'web', type: 'page', url, ...extra });

/** Redis Cluster's rule: the slot is the hash of what stands between the first `{` and the next `}`, if anything. */
function hashTag(key: string): string {
  const open = key.indexOf('{');
  if (open < 0) return key;
  const close = key.indexOf('}', open + 1);
  return close <= open + 1 ? key : key.slice(open + 1, close);
}

describe('classification of hostile URLs', () => {
  it('never throws on a malformed percent-escape: the capture stays as it was sent', () => {
    expect(() => safeDecode('%E0')).not.toThrow();
    expect(demo.classifyEvent(page('https://shop.example/products/%E0'))).toEqual({ kind: 'topic', topic: 'product:%e0', stage: 0, hintIgnored: false });
    expect(demo.classifyEvent(page('/products/%'))).toMatchObject({ kind: 'topic', topic: 'product:%' });
  });

  it('escapes control characters and braces, so a topic cannot end an SSE line or move a key out of its slot', () => {
    for (const capture of ['a%0Ab', 'a%0D%0Aid:%20x', '%7Bx%7D', 'x%7D%7Bp1', '%00', 'a%E2%80%A8b', '%7B%7D']) {
      const v = demo.classifyEvent(page(`/products/${capture}`));
      if (v.kind !== 'topic') throw new Error(`${capture}: ${v.kind}`);
      expect(v.topic).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029{}]/);
      // The stage index key has the whole topic as its hash tag, nothing less.
      expect(hashTag(keys.stageIndex('ns:', v.topic, 'intro'))).toBe(v.topic);
      // The transition id (the SSE id) is one line.
      expect(transitionId('p1', v.topic, 1_700_000_000_000, 'intro')).not.toMatch(/[\r\n]/);
    }
    expect(demo.classify(page('/products/a%0Ab'))).toEqual({ topic: 'product:a%0ab', stage: 0 });
    expect(demo.classify(page('/products/%7Bx%7D'))).toEqual({ topic: 'product:%7bx%7d', stage: 0 });
  });

  it('refuses a topic longer than 128 characters with its reason, rather than storing it', () => {
    const v = demo.classifyEvent(page(`/products/${'x'.repeat(2048)}`));
    expect(v).toMatchObject({ kind: 'refused', reason: 'topic_too_long' });
    const ok = demo.classifyEvent(page(`/products/${'x'.repeat(TOPIC_MAX_LENGTH - 'product:'.length)}`));
    expect(ok).toMatchObject({ kind: 'topic' });
    // Property templates are bounded the same way.
    const email = compileTopicMap(TopicMapConfig.parse({ rules: [{ channel: 'email', topic: 'campaign:{props.c}', stage: 'intro' }] }));
    expect(email.classifyEvent({ channel: 'email', type: 'track', props: { c: 'y'.repeat(500) } })).toMatchObject({
      kind: 'refused',
      reason: 'topic_too_long',
    });
  });

  it('lets a URL pattern constrain a capture', () => {
    const map = compileTopicMap(TopicMapConfig.parse({ rules: [{ url: '/p/:sku([A-Za-z0-9-]{1,8})', topic: 'product:{sku}', stage: 'intro' }] }));
    expect(map.classify(page('/p/AB-12'))).toEqual({ topic: 'product:ab-12', stage: 0 });
    expect(map.classify(page('/p/way-too-long-sku'))).toBeNull();
    expect(map.classify(page('/p/a%0Ab'))).toBeNull();
    expect(map.classify(page('/p/a.b'))).toBeNull();
  });

  it('refuses a map whose capture pattern is not a regular expression, naming it', () => {
    const r = TopicMapConfig.safeParse({ rules: [{ url: '/p/:sku([a-z)', topic: 'product:{sku}', stage: 'intro' }] });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.message).toMatch(/:sku\(\[a-z\).*not a regular expression/);
    const unclosed = TopicMapConfig.safeParse({ rules: [{ url: '/p/:sku([a-z', topic: 'product:{sku}', stage: 'intro' }] });
    expect(unclosed.error?.issues[0]?.message).toMatch(/a capture is :name or :name\(pattern\)/);
  });

  it('normalises idempotently: a stored topic normalises to itself', () => {
    for (const t of ['Product:SKU-1', 'a\nb', '{x}', '50%', 'x\u0085y', '\ud800lone']) {
      const once = normaliseTopic(t);
      expect(normaliseTopic(once)).toBe(once);
    }
    expect(normaliseTopic('\ud800x')).toBe('\ufffdx');
  });
});

describe('data-topic hints', () => {
  it('takes a hinted topic that a rule could produce, with its stage hint', () => {
    expect(demo.classifyEvent(page('/about', { topic: 'product:sku-9', stage: 'purchase' }))).toEqual({
      kind: 'topic',
      topic: 'product:sku-9',
      stage: 2,
      hintIgnored: false,
    });
  });

  it('ignores (and reports) a hinted topic no rule could produce; the URL decides, the stage hint goes with it', () => {
    expect(demo.classifyEvent(page('/products/sku-1', { topic: 'anything:i-like', stage: 'purchase' }))).toEqual({
      kind: 'topic',
      topic: 'product:sku-1',
      stage: 0,
      hintIgnored: true,
    });
    expect(demo.classifyEvent(page('/about', { topic: 'plan:pro' }))).toEqual({ kind: 'unmatched', hintIgnored: true });
    // Too long once normalised: never taken.
    expect(demo.classifyEvent(page('/about', { topic: `product:${'x'.repeat(200)}` }))).toEqual({ kind: 'unmatched', hintIgnored: true });
  });

  it('reads a constrained capture into the pattern of hints it accepts', () => {
    const map = compileTopicMap(TopicMapConfig.parse({ rules: [{ url: '/p/:sku([a-z0-9]{1,4})', topic: 'product:{sku}', stage: 'intro' }] }));
    expect(map.classify(page('/x', { topic: 'product:ab12' }))).toEqual({ topic: 'product:ab12', stage: 0 });
    expect(map.classify(page('/x', { topic: 'product:abcdef' }))).toBeNull();
  });

  it('takes topics on the map allow-list, exact or by prefix, per site', () => {
    const map = compileTopicMap(
      TopicMapConfig.parse({
        hintTopics: ['plan:pro', 'campaign:*'],
        rules: [{ url: '/products/:sku', topic: 'product:{sku}', stage: 'intro' }],
        sites: { shop: { hintTopics: ['promo:*'] } },
      }),
    );
    expect(map.classify(page('/about', { topic: 'plan:pro' }))).toEqual({ topic: 'plan:pro', stage: 0 });
    expect(map.classify(page('/about', { topic: 'Campaign:Spring', stage: 'detail' }))).toEqual({ topic: 'campaign:spring', stage: 1 });
    expect(map.classify(page('/about', { topic: 'plan:basic' }))).toBeNull();
    expect(map.classify(page('/about', { topic: 'promo:x' }))).toBeNull();
    expect(map.classify(page('/about', { site: 'shop', topic: 'promo:x' }))).toEqual({ topic: 'promo:x', stage: 0 });
  });

  it('keeps stage hints working for the rules topic', () => {
    expect(demo.classify(page('/products/sku-1', { stage: 'detail' }))).toEqual({ topic: 'product:sku-1', stage: 1 });
  });
});

describe('limits in the topic map', () => {
  it('has the documented defaults, and per-site topic budgets', () => {
    const map = compileTopicMap(TopicMapConfig.parse({ limits: { topicsPerSite: 50 }, sites: { big: { limits: { topicsPerSite: 5000 } } } }));
    expect(demo.limits(undefined)).toEqual({ dialoguesPerPerson: 200, linksPerPerson: 100, topicsPerSite: 100_000, sites: 10_000 });
    expect(map.limits('other').topicsPerSite).toBe(50);
    expect(map.limits('big')).toMatchObject({ topicsPerSite: 5000, dialoguesPerPerson: 200 });
    // Per-person caps are the map's: a person's dialogues span sites.
    expect(TopicMapConfig.safeParse({ sites: { big: { limits: { dialoguesPerPerson: 5 } } } }).success).toBe(false);
  });
});
