/**
 * Types of load/scenario.js, the one scenario shared by the k6 scripts and the Node benchmark.
 * scenario.js is type-checked against these declarations by `npm run typecheck:k6`.
 * The shapes follow contract/collect.ts (the body of POST /v1/collect); this file may not import
 * it (k6 cannot load zod), so bench/ checks a sample of batches against the real schema.
 */

export interface ScenarioOptions {
  /** Seeds the generator: the same seed gives the same traffic. k6 scripts add the VU number. */
  seed?: number;
  site?: string;
  /** Origin of the page URLs the events carry. */
  origin?: string;
  /** Products in the catalog (topics `product:sku-N`), picked with Zipf-like popularity. */
  skus?: number;
  /** Visitors walking at the same time; their batches interleave. */
  activeVisitors?: number;
  /** Mean events per dialogue (one visitor, one product). */
  eventsPerDialogue?: number;
  /** Events per POST, as the snippet batches them (10). */
  batchSize?: number;
  /** Share of visitors who log in (identify) on the checkout page. */
  identifyShare?: number;
  /** Share of visitors with a crawler user agent. */
  botShare?: number;
}

export interface ElementContext {
  tag: string;
  id?: string;
  cls?: string;
  text?: string;
  href?: string;
  sel?: string;
  data?: Record<string, string>;
}

/** One event of a batch, as the snippet reports it (contract/collect.ts `CollectEvent`). */
export interface ScenarioEvent {
  type: 'page' | 'click' | 'track' | 'identify';
  id: string;
  ts: number;
  url: string;
  ref?: string;
  title?: string;
  topic?: string;
  stage?: string;
  el?: ElementContext;
  name?: string;
  props?: Record<string, string>;
  value?: number;
  user?: string;
}

/** The body of one POST /v1/collect (contract/collect.ts `CollectBatch`). */
export interface CollectBody {
  site: string;
  visitor: string;
  session?: string;
  user?: string;
  events: ScenarioEvent[];
}

export interface ScenarioBatch {
  visitor: string;
  /** The visitor's browser: send it as the User-Agent header. */
  userAgent: string;
  body: CollectBody;
}

export interface Scenario {
  readonly options: Required<ScenarioOptions>;
  /** The next batch of a randomly chosen active visitor; `now` is the client clock (epoch ms). */
  nextBatch(now: number): ScenarioBatch;
  stats(): { visitors: number; batches: number; events: number };
}

export declare const DEFAULTS: Required<ScenarioOptions>;
export declare const STAGES: readonly ['intro', 'detail', 'purchase'];
/** The snippet posts a string body with fetch, so its batches arrive as text/plain. */
export declare const CONTENT_TYPE: string;
export declare function createRandom(seed: number): () => number;
export declare function createScenario(options?: ScenarioOptions): Scenario;
/** A fresh visitor's one batch that walks a product from intro to purchase (latency probes). */
export declare function probeBatch(visitor: string, now: number, options?: ScenarioOptions): ScenarioBatch;
