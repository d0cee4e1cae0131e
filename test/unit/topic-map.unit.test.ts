import { describe, expect, it } from 'vitest';
import { compileTopicMap, DEFAULT_TOPIC_MAP, TopicMapConfig } from '../../history/fold/topic-map.js';
import { parseTopicMap } from '../../history/fold/topic-map-file.js';

const demo = compileTopicMap(DEFAULT_TOPIC_MAP);
const web = (url: string, extra: Record<string, unknown> = {}) => ({ channel: 'web', type: 'page', url, ...extra });

describe('topic map', () => {
  it('maps the demo shop URLs', () => {
    expect(demo.classify(web('https://shop.example/products/sku-1'))).toEqual({ topic: 'product:sku-1', stage: 0 });
    expect(demo.classify(web('https://shop.example/products/SKU-1/specs?x=1#top'))).toEqual({ topic: 'product:sku-1', stage: 1 });
    expect(demo.classify(web('/checkout/sku-2/'))).toEqual({ topic: 'product:sku-2', stage: 2 });
    expect(demo.classify(web('https://shop.example/about'))).toBeNull();
    expect(demo.classify({ channel: 'web', type: 'click' })).toBeNull();
  });

  it('lets data-topic/data-stage hints override the URL', () => {
    expect(demo.classify(web('https://shop.example/products/sku-1', { topic: 'product:sku-9', stage: 'purchase' }))).toEqual({
      topic: 'product:sku-9',
      stage: 2,
    });
    // A stage hint alone keeps the URL's topic.
    expect(demo.classify(web('https://shop.example/products/sku-1', { stage: 'detail' }))).toEqual({ topic: 'product:sku-1', stage: 1 });
    // A topic hint alone starts at the ladder's first stage.
    expect(demo.classify(web('https://shop.example/about', { topic: 'product:sku-5' }))).toEqual({ topic: 'product:sku-5', stage: 0 });
    // An unknown stage hint is ignored.
    expect(demo.classify(web('https://shop.example/about', { stage: 'bogus' }))).toBeNull();
  });

  it('classifies other channels by channel, event name and properties', () => {
    const map = compileTopicMap(
      TopicMapConfig.parse({
        ladder: ['aware', 'consider', 'buy', 'renew'],
        rules: [
          { channel: 'email', event: 'Email Link Clicked', topic: 'campaign:{props.campaign}', stage: 'consider' },
          { channel: 'call', event: 'Call Completed', topic: 'product:{props.product}', stage: 'buy' },
        ],
      }),
    );
    expect(map.classify({ channel: 'email', type: 'track', name: 'Email Link Clicked', props: { campaign: 'Spring' } })).toEqual({
      topic: 'campaign:spring',
      stage: 1,
    });
    expect(map.classify({ channel: 'call', type: 'track', name: 'Call Completed', props: {} })).toBeNull();
    expect(map.classify({ channel: 'web', type: 'track', name: 'Call Completed', props: { product: 'x' } })).toBeNull();
  });

  it('rejects a stage that is not on the ladder, naming the line', () => {
    const text = `{
  "ladder": ["intro", "detail"],
  "rules": [
    { "url": "/a/:x", "topic": "a:{x}", "stage": "intro" },
    { "url": "/b/:x", "topic": "b:{x}", "stage": "purchase" }
  ]
}`;
    expect(() => parseTopicMap(text, 'map.json')).toThrow(/map\.json:5: rules\.1\.stage: "purchase" is not on the ladder/);
  });

  it('rejects malformed JSON with its line', () => {
    expect(() => parseTopicMap('{\n  "ladder": [\n  "intro",,\n]}', 'bad.json')).toThrow(/bad\.json:3: not valid JSON/);
  });

  it('takes stall rules, and refuses those that cannot work with the line and the reason', () => {
    const map = parseTopicMap(JSON.stringify({ stalls: [{ name: 'quiet-at-detail', stage: 'detail', after: '3d', topics: 'product:*' }] }), 'map.json');
    expect(compileTopicMap(map).stalls).toEqual([{ name: 'quiet-at-detail', stage: 'detail', after: 3 * 86_400_000, topics: 'product:*' }]);
    const bad = (stalls: unknown[]) => () => parseTopicMap(JSON.stringify({ quietDays: 7, stalls }, null, 1), 'map.json');
    expect(bad([{ name: 'x', stage: 'checkout', after: '1d' }])).toThrow(/stalls\.0\.stage: "checkout" is not on the ladder/);
    expect(bad([{ name: 'x', stage: 'detail', after: '7d' }])).toThrow(/stalls\.0\.after: must be shorter than quietDays/);
    expect(bad([{ name: 'x', stage: 'detail', after: 'soon' }])).toThrow(/stalls\.0\.after/);
    expect(
      bad([
        { name: 'x', stage: 'detail', after: '1d' },
        { name: 'x', stage: 'intro', after: '1d' },
      ]),
    ).toThrow(/stalls\.1\.name: "x" is named twice/);
    expect(bad(Array.from({ length: 33 }, (_, i) => ({ name: `r${i}`, stage: 'intro', after: '1h' })))).toThrow(/stalls/);
  });
});
