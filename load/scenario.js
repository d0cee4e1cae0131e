// @ts-check
/**
 * The load scenario: how visitors walk the shop and how their events are batched. ONE module,
 * played verbatim by the k6 scripts (load/*.js) and by the Node benchmark (bench/), so a k6 run
 * and `npm run bench` send the same kind of traffic.
 *
 * No imports at all: it runs in k6's JavaScript runtime and in Node. Types live in scenario.d.ts
 * (both sides import that), and this file is checked against them (`npm run typecheck:k6`).
 *
 * The traffic it makes, per visitor:
 * - a few dialogues (1-3 topics, popular products more often: Zipf-like), each about
 *   `eventsPerDialogue` events (default 20) that walk intro (/products/:sku), detail
 *   (/products/:sku/specs) and purchase (/checkout/:sku) as far as the visitor's intent goes,
 *   with back-navigation; page views and clicks, a share of the clicks carry
 *   data-topic/data-stage hints (as the demo shop's buttons do);
 * - some browsing that matches no topic (home, categories, search, help);
 * - a few visitors log in at checkout (`identify`) and buy (`track` "Order Completed" with a value).
 * Events go out as the snippet sends them: `batchSize` (10) events per POST /v1/collect, one
 * visitor per batch, the body of contract/collect.ts, sent as text/plain (the snippet's fetch of a
 * string body). Many visitors are active at once and their batches interleave.
 */

/** @typedef {import('./scenario.js').ScenarioOptions} ScenarioOptions */
/** @typedef {import('./scenario.js').Scenario} Scenario */
/** @typedef {import('./scenario.js').ScenarioBatch} ScenarioBatch */
/** @typedef {import('./scenario.js').ScenarioEvent} ScenarioEvent */
/** @typedef {import('./scenario.js').ElementContext} ElementContext */

/** @type {Required<ScenarioOptions>} */
export const DEFAULTS = {
  seed: 1,
  site: 'demo',
  origin: 'https://shop.example',
  skus: 500,
  activeVisitors: 2000,
  eventsPerDialogue: 20,
  batchSize: 10,
  identifyShare: 0.05,
  botShare: 0.02,
};

export const STAGES = /** @type {const} */ (['intro', 'detail', 'purchase']);

/** Content type of the snippet's batches (fetch with a string body). */
export const CONTENT_TYPE = 'text/plain;charset=UTF-8';

/** Browser user agents, roughly weighted by share; bots are drawn separately (`botShare`). */
const USER_AGENTS = [
  [30, 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36'],
  [18, 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1'],
  [16, 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36'],
  [10, 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15'],
  [8, 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0'],
  [7, 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0'],
  [5, 'Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36'],
  [4, 'Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1'],
  [2, 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36'],
];
const BOTS = [
  'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)',
  'Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)',
];
const CATEGORIES = ['shoes', 'jackets', 'tents', 'backpacks', 'lamps', 'socks', 'gloves', 'bottles'];
const QUERIES = ['rain jacket', 'trail shoes', 'tent 2 person', 'headlamp', 'merino socks', 'water bottle'];

/**
 * sfc32 seeded through splitmix32: small, fast, the same sequence in k6 and in Node.
 * @param {number} seed
 * @returns {() => number} uniform in [0, 1)
 */
export function createRandom(seed) {
  let s = seed >>> 0;
  const split = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split();
  let b = split();
  let c = split();
  let d = split();
  return () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) >>> 0;
    return t / 4294967296;
  };
}

/**
 * @param {Required<ScenarioOptions>} o
 * @param {() => number} random
 */
function catalog(o, random) {
  // Zipf-like popularity (s = 1): a few products get most of the attention.
  /** @type {number[]} */
  const cumulative = [];
  let total = 0;
  for (let i = 1; i <= o.skus; i++) {
    total += 1 / i;
    cumulative.push(total);
  }
  /** @type {number[]} */
  const prices = [];
  for (let i = 0; i < o.skus; i++) prices.push(10 + Math.round(random() * 490));
  const uaTotal = USER_AGENTS.reduce((n, [w]) => n + Number(w), 0);
  return {
    /** @returns {number} an index into the catalog */
    pick() {
      const x = random() * total;
      let lo = 0;
      let hi = cumulative.length - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (/** @type {number} */ (cumulative[mid]) < x) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    },
    /** @param {number} i */
    price: (i) => /** @type {number} */ (prices[i]),
    userAgent() {
      if (random() < o.botShare) return /** @type {string} */ (BOTS[Math.floor(random() * BOTS.length)]);
      let x = random() * uaTotal;
      for (const [w, ua] of USER_AGENTS) {
        x -= Number(w);
        if (x < 0) return String(ua);
      }
      return String(/** @type {(string | number)[]} */ (USER_AGENTS[0])[1]);
    },
  };
}

/**
 * What one step of a walk looks like before it gets an id and a time.
 * @typedef {{ type: 'page' | 'click' | 'track' | 'identify', url: string, ref?: string, title?: string,
 *   topic?: string, stage?: string, el?: ElementContext, name?: string, props?: Record<string, string>,
 *   value?: number, user?: string }} Step
 */

/**
 * A scenario: an endless supply of batches from `activeVisitors` interleaved visitors.
 * @param {ScenarioOptions} [options]
 * @returns {Scenario}
 */
export function createScenario(options) {
  /** @type {Required<ScenarioOptions>} */
  const o = Object.assign({}, DEFAULTS, options || {});
  const random = createRandom(o.seed);
  const shop = catalog(o, random);
  const u32 = () => Math.floor(random() * 4294967296);
  // The snippet's ids: 96 random bits as digits (`rid`), events prefixed with the time in base 36.
  const rid = () => `${u32()}${u32()}${u32()}`;
  const pickOf = /** @type {<T>(list: readonly T[]) => T} */ ((list) => list[Math.floor(random() * list.length)]);
  let visitorsStarted = 0;
  let batches = 0;
  let events = 0;

  /** @param {number} sku */
  const skuName = (sku) => `sku-${sku + 1}`;
  /** @param {number} sku @param {number} stage */
  const stageUrl = (sku, stage) =>
    stage === 0 ? `${o.origin}/products/${skuName(sku)}` : stage === 1 ? `${o.origin}/products/${skuName(sku)}/specs` : `${o.origin}/checkout/${skuName(sku)}`;
  /** @param {number} sku @param {number} stage */
  const stageTitle = (sku, stage) =>
    stage === 0 ? `Product ${skuName(sku)} · Demo shop` : stage === 1 ? `Product ${skuName(sku)} specs · Demo shop` : `Checkout ${skuName(sku)} · Demo shop`;

  /**
   * A click on the page of (sku, stage). Hinted clicks are on elements that carry
   * data-topic/data-stage (the demo shop's "Compare sizes", "Pay" buttons); the others are
   * ordinary links and buttons that the URL rule classifies.
   * @param {number} sku @param {number} stage @param {string} url
   * @returns {Step}
   */
  function click(sku, stage, url) {
    const topic = `product:${skuName(sku)}`;
    const hinted = random() < 0.4;
    if (hinted) {
      /** @type {ElementContext} */
      const el =
        stage === 0
          ? { tag: 'button', id: 'wishlist', text: 'Add to wishlist', sel: 'div.buy-box>button#wishlist', data: { sku: skuName(sku) } }
          : stage === 1
            ? { tag: 'button', id: 'compare', text: 'Compare sizes', sel: 'div.specs>button#compare', data: { sku: skuName(sku) } }
            : { tag: 'button', id: 'pay', text: 'Pay', sel: 'form.checkout>button#pay', data: { sku: skuName(sku), price: String(shop.price(sku)) } };
      return { type: 'click', url, topic, stage: /** @type {string} */ (STAGES[stage]), el };
    }
    const plain = /** @type {ElementContext[]} */ ([
      { tag: 'button', cls: 'gallery-next', text: 'Next photo', sel: 'div.gallery>button.gallery-next' },
      { tag: 'a', cls: 'tab', text: 'Reviews', href: `${url}#reviews`, sel: 'nav.tabs>a.tab' },
      { tag: 'a', text: 'See the full specs', href: stageUrl(sku, 1), sel: 'main>p>a' },
      { tag: 'button', cls: 'size-option selected', text: `Size ${38 + Math.floor(random() * 8)}`, sel: 'div.sizes>button.size-option.selected' },
    ]);
    return { type: 'click', url, el: pickOf(plain) };
  }

  /** @param {string} ref @returns {Step} */
  function browse(ref) {
    const r = random();
    if (r < 0.3) return { type: 'page', url: `${o.origin}/`, ref, title: 'Demo shop' };
    if (r < 0.6) {
      const cat = pickOf(CATEGORIES);
      return { type: 'page', url: `${o.origin}/category/${cat}`, ref, title: `${cat} · Demo shop` };
    }
    if (r < 0.8) {
      const q = pickOf(QUERIES);
      return { type: 'page', url: `${o.origin}/search?q=${encodeURIComponent(q)}`, ref, title: `Search: ${q} · Demo shop` };
    }
    return { type: 'click', url: ref || `${o.origin}/`, el: { tag: 'a', text: 'Shipping', href: `${o.origin}/help/shipping`, sel: 'footer>nav>a' } };
  }

  /**
   * One dialogue: about `eventsPerDialogue` events on one product, as far as the intent goes.
   * @param {number} sku @param {Step[]} out @param {{ url: string, user?: string }} at
   */
  function dialogue(sku, out, at) {
    const r = random();
    const intent = r < 0.45 ? 0 : r < 0.8 ? 1 : 2;
    const length = Math.max(intent + 1, Math.round(o.eventsPerDialogue * (0.5 + random())));
    let stage = 0;
    let url = '';
    for (let i = 0; i < length; i++) {
      // Advance evenly over the walk; now and then go back a page.
      const target = Math.min(intent, Math.floor(((i + 1) * (intent + 1)) / length));
      const page = target > stage ? target : stage > 0 && random() < 0.1 ? stage - 1 : stage;
      if (page !== stage || url === '') {
        stage = page;
        const next = stageUrl(sku, stage);
        out.push({ type: 'page', url: next, ref: url || at.url, title: stageTitle(sku, stage) });
        url = next;
        continue;
      }
      if (stage === 2 && !at.user && random() < o.identifyShare * 3) {
        at.user = `u-${rid()}`;
        out.push({ type: 'identify', url, user: at.user });
        continue;
      }
      if (stage === 2 && i === length - 1) {
        out.push({ type: 'track', url, name: 'Order Completed', props: { sku: skuName(sku) }, value: shop.price(sku) });
        continue;
      }
      out.push(random() < 0.35 ? { type: 'page', url, ref: url, title: stageTitle(sku, stage) } : click(sku, stage, url));
    }
    at.url = url;
  }

  /**
   * @typedef {{ visitor: string, session: string, userAgent: string, user?: string, steps: Step[], next: number, identifyAt: number, userAfter?: string }} Visitor
   */

  /** @returns {Visitor} */
  function newVisitor() {
    visitorsStarted++;
    /** @type {Step[]} */
    const steps = [];
    /** @type {{ url: string, user?: string }} */
    const at = { url: '' };
    const topics = random() < 0.6 ? 1 : random() < 0.7 ? 2 : 3;
    for (let t = 0; t < topics; t++) {
      // Some browsing before each product: ~15% of all events match no topic.
      const lead = Math.floor(random() * (o.eventsPerDialogue * 0.35));
      for (let i = 0; i < lead; i++) {
        const s = browse(at.url);
        steps.push(s);
        if (s.type === 'page') at.url = s.url;
      }
      dialogue(shop.pick(), steps, at);
    }
    // The snippet sends full batches; the tail of a visit is filled with more browsing.
    while (steps.length % o.batchSize !== 0) steps.push(browse(at.url));
    const identifyAt = steps.findIndex((s) => s.type === 'identify');
    return { visitor: rid(), session: rid(), userAgent: shop.userAgent(), steps, next: 0, identifyAt, userAfter: at.user };
  }

  /** @type {Visitor[]} */
  const active = [];
  for (let i = 0; i < o.activeVisitors; i++) active.push(newVisitor());

  return {
    options: o,
    nextBatch(now) {
      const slot = Math.floor(random() * active.length);
      const v = /** @type {Visitor} */ (active[slot]);
      const steps = v.steps.slice(v.next, v.next + o.batchSize);
      v.next += steps.length;
      // The snippet sends the user id on every batch once identify() ran on the page.
      if (v.identifyAt >= 0 && v.next > v.identifyAt) v.user = v.userAfter;
      // Client times: the batch's events happened over the last few seconds, oldest first.
      let ts = now - steps.length * (100 + Math.floor(random() * 300));
      /** @type {ScenarioEvent[]} */
      const list = steps.map((s) => {
        ts += 100 + Math.floor(random() * 200);
        const t = Math.min(ts, now);
        return Object.assign({ id: t.toString(36) + rid(), ts: t }, s);
      });
      if (v.next >= v.steps.length) active[slot] = newVisitor();
      batches++;
      events += list.length;
      /** @type {ScenarioBatch} */
      const batch = {
        visitor: v.visitor,
        userAgent: v.userAgent,
        body: v.user
          ? { site: o.site, visitor: v.visitor, session: v.session, user: v.user, events: list }
          : { site: o.site, visitor: v.visitor, session: v.session, events: list },
      };
      return batch;
    },
    stats: () => ({ visitors: visitorsStarted, batches, events }),
  };
}

/**
 * A probe: a fresh visitor whose one batch walks one product from intro to purchase, so the
 * batch's last event makes the dialogue reach `purchase` (for click-to-stage latency).
 * @param {string} visitor
 * @param {number} now
 * @param {ScenarioOptions} [options]
 * @returns {ScenarioBatch}
 */
export function probeBatch(visitor, now, options) {
  const o = Object.assign({}, DEFAULTS, options || {});
  const sku = 'sku-probe';
  const url0 = `${o.origin}/products/${sku}`;
  const url1 = `${url0}/specs`;
  const url2 = `${o.origin}/checkout/${sku}`;
  /** @type {Omit<ScenarioEvent, 'id' | 'ts'>[]} */
  const steps = [
    { type: 'page', url: url0, title: 'Probe' },
    { type: 'click', url: url0, el: { tag: 'button', cls: 'gallery-next', text: 'Next photo', sel: 'div.gallery>button.gallery-next' } },
    { type: 'page', url: url1, ref: url0, title: 'Probe specs' },
    { type: 'click', url: url1, el: { tag: 'a', cls: 'tab', text: 'Reviews', href: `${url1}#reviews`, sel: 'nav.tabs>a.tab' } },
    { type: 'page', url: url2, ref: url1, title: 'Probe checkout' },
  ];
  while (steps.length < o.batchSize - 1)
    steps.push({ type: 'click', url: url1, el: { tag: 'button', cls: 'size-option', text: 'Size 42', sel: 'div.sizes>button.size-option' } });
  steps.push({
    type: 'click',
    url: url2,
    topic: `product:${sku}`,
    stage: 'purchase',
    el: { tag: 'button', id: 'pay', text: 'Pay', sel: 'form.checkout>button#pay' },
  });
  const events = steps.slice(0, o.batchSize).map((s, i) => Object.assign({ id: `${visitor}-${i}`, ts: now - (o.batchSize - i) }, s));
  return {
    visitor,
    userAgent: /** @type {string} */ (/** @type {(string | number)[]} */ (USER_AGENTS[0])[1]),
    body: { site: o.site, visitor, session: `${visitor}-s`, events },
  };
}

// Compile-time only: the implementations above have the types scenario.d.ts declares.
/** @type {[typeof import('./scenario.js').createScenario, typeof import('./scenario.js').probeBatch, typeof import('./scenario.js').createRandom]} */
const declared = [createScenario, probeBatch, createRandom];
void declared;
