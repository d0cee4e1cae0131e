import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { DEFAULT_TOPIC_MAP, TopicMapConfig } from '../../history/fold/topic-map.js';
import { eventually } from './app.js';

/**
 * One customer journey, sent by Segment's and RudderStack's libraries unchanged, and what it must
 * become: a page view of a product, a click in an e-mail about it, then an order of it, in one
 * user's dialogue about that product at `purchase`, with the order's revenue in the RFM inputs.
 */

/** The demo shop's rules, its e-mail rule, and Segment's e-commerce spec order (`Order Completed`). */
export const JOURNEY_MAP = TopicMapConfig.parse({
  rules: [
    ...DEFAULT_TOPIC_MAP.rules,
    { channel: 'email', event: 'Email Link Clicked', topic: 'product:{props.product}', stage: 'detail' },
    { event: 'Order Completed', topic: 'product:{props.products.0.product_id}', stage: 'purchase' },
  ],
});

export interface PersonView {
  person: string;
  dialogues: { topic: string; stage: string; channels: string[]; counts: Record<string, number> }[];
  rfm: { purchases: number; totalValue: number } | null;
}

/**
 * Polls the query API until `person`'s dialogue about `topic` is at `purchase`, the RFM inputs are in
 * and, when given, each stage has been counted at least as often as `counts` says. The anonymous
 * page view is keyed by the visitor, so it lands on its own partition and may be folded after the
 * user's order (and then merged into the user): the journey is whole only once every step is counted.
 */
export async function purchased(appUrl: string, person: string, topic: string, counts: Record<string, number> = {}, timeoutMs = 30_000): Promise<PersonView> {
  return eventually(
    async () => {
      const r = await fetch(`${appUrl}/v1/people/${encodeURIComponent(person)}`);
      if (r.status !== 200) return undefined;
      const view = (await r.json()) as PersonView;
      const d = view.dialogues.find((x) => x.topic === topic && x.stage === 'purchase');
      const whole = d && Object.entries(counts).every(([stage, n]) => (d.counts[stage] ?? 0) >= n);
      return whole && view.rfm ? view : undefined;
    },
    timeoutMs,
    `${person}'s ${topic} at purchase${Object.keys(counts).length ? ` with ${JSON.stringify(counts)} counted` : ''}`,
  );
}

/** A sites file with one site (its write key, and the browser origins it allows), for INGEST_SITES. */
export function sitesFile(site: { id: string; writeKeys: string[]; origins?: string[] }): string {
  const path = join(tmpdir(), `clickfold-sites-${randomUUID()}.json`);
  writeFileSync(path, JSON.stringify({ sites: [{ origins: [], ...site }] }));
  return path;
}

export type JourneyCall = ['page' | 'identify' | 'track', Record<string, unknown>];

/**
 * The journey as a server sends it with Segment's or RudderStack's Node library (the same calls in
 * both): an anonymous page view of the product, the sign-in that links it, a click in an e-mail
 * about the product, and the order (Segment's e-commerce spec, `revenue` feeding RFM).
 */
export function serverJourney(anonymousId: string, userId: string, sku: string): JourneyCall[] {
  return [
    ['page', { anonymousId, name: 'Product', properties: { url: `https://shop.example/products/${sku}`, title: 'Trail Runner 2' } }],
    ['identify', { userId, anonymousId, traits: { plan: 'pro' } }],
    ['track', { userId, event: 'Email Link Clicked', properties: { product: sku, campaign: 'spring' }, context: { channel: 'email' } }],
    [
      'track',
      { userId, event: 'Order Completed', properties: { order_id: `o-${sku}`, revenue: 129, currency: 'EUR', products: [{ product_id: sku, quantity: 1 }] } },
    ],
  ];
}
