import { normaliseTopic } from './topic-map.js';

/**
 * A topic pattern as marketers write them in rules and audiences: an exact topic (`product:sku-1`),
 * a prefix ending in `*` (`product:*`), or `*` for every topic. Normalised like topics, so a pattern
 * names what the stores hold whatever case it was written in.
 */
export interface TopicPattern {
  /** The exact topic, or null for a prefix pattern. */
  exact: string | null;
  /** The pattern as written. */
  source: string;
  matches(topic: string): boolean;
}

export function topicPattern(pattern: string): TopicPattern {
  if (pattern.endsWith('*')) {
    const prefix = normaliseTopic(pattern.slice(0, -1));
    return { exact: null, source: pattern, matches: (t) => t.startsWith(prefix) };
  }
  const exact = normaliseTopic(pattern);
  return { exact, source: pattern, matches: (t) => t === exact };
}
