import { parseArgs } from 'node:util';
import { compileTopicMap, type Classifiable, type TopicMap } from '../history/fold/topic-map.js';
import { loadTopicMap } from '../history/fold/topic-map-file.js';
import { formatDuration } from '../contract/duration.js';

/**
 * `npm run topic-map -- [--map FILE] [--site SITE] [--channel CH] URL-or-JSON...`
 * Prints which (topic, stage) each URL or event maps to, so a site owner can check a map before
 * deploying it. A bad map exits with code 2 and `file:line: path: reason`.
 */
const USAGE = `usage: npm run topic-map -- [--map FILE] [--site SITE] [--channel CHANNEL] <url | event JSON>...
  an event JSON is what a channel sends, e.g. '{"channel":"email","type":"track","name":"Email Link Clicked","props":{"product":"sku-1"}}'`;

export function describe(map: TopicMap, input: string, defaults: { site?: string | undefined; channel: string }): string {
  let event: Classifiable;
  if (input.trim().startsWith('{')) {
    const parsed = JSON.parse(input) as Partial<Classifiable>;
    event = { channel: defaults.channel, type: 'track', site: defaults.site, ...parsed };
  } else {
    event = { channel: defaults.channel, type: 'page', url: input, site: defaults.site };
  }
  const v = map.classifyEvent(event);
  const hint = v.hintIgnored ? '  (data-topic ignored: no rule produces it, not in hintTopics)' : '';
  if (v.kind === 'topic') {
    const signal = v.signal ? `, signal ${v.signal.name}${v.signal.close ? ' closed' : ''}` : '';
    return `${input}  ->  ${v.topic} @ ${map.ladder[v.stage]}${signal}${hint}`;
  }
  if (v.kind === 'refused') return `${input}  ->  refused (${v.reason}): ${v.detail}`;
  return `${input}  ->  (no rule: kept in Kafka, not in the history)${hint}`;
}

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { map: { type: 'string' }, site: { type: 'string' }, channel: { type: 'string', default: 'web' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help || positionals.length === 0) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  let map: TopicMap;
  try {
    map = compileTopicMap(await loadTopicMap(values.map));
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }
  console.log(`ladder: ${map.ladder.join(' < ')}`);
  for (const r of map.stalls) console.log(`stall rule ${r.name}: quiet at ${r.stage} for ${formatDuration(r.after)}${r.topics ? ` (topics ${r.topics})` : ''}`);
  for (const input of positionals) {
    try {
      console.log(describe(map, input, { site: values.site, channel: values.channel ?? 'web' }));
    } catch (err) {
      console.error(`${input}  ->  not a URL or event JSON: ${(err as Error).message}`);
      return 2;
    }
  }
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main(process.argv.slice(2));
}
