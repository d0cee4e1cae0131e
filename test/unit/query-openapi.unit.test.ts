import { describe, expect, it } from 'vitest';
import * as shapes from '../../contract/query.js';
import { createQueryApp } from '../../history/query/app.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { createLogger } from '../../lib/logger.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';

/**
 * The response shapes live in contract/query.ts as plain zod with `.meta()`; the OpenAPI document
 * still names them as components and refers to them by $ref, with their descriptions and formats.
 * (The int test validates the whole document; this one catches the shapes being inlined or losing
 * their documentation, which a valid document would not show.)
 */
type Schema = { $ref?: string; type?: unknown; format?: string; description?: string; items?: Schema; properties?: Record<string, Schema> };
interface Doc {
  components: { schemas: Record<string, Schema> };
  paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: Schema }> }> }>>;
}

const doc = async (): Promise<Doc> => {
  const app = createQueryApp({ store: new MemoryHistoryStore(FOLD_OPTIONS), logger: createLogger('test', 'silent'), dashboard: false });
  return (await (await app.request('/v1/openapi.json')).json()) as Doc;
};
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

describe('query API OpenAPI document, from contract/query.ts', () => {
  it('names every response shape as a component, in the order the routes use them', async () => {
    const d = await doc();
    expect(Object.keys(d.components.schemas)).toEqual([
      'Person',
      'Dialogue',
      'Ltv',
      'PastTransition',
      'Error',
      'PersonExport',
      'Erased',
      'Topics',
      'TopicSummary',
      'Funnel',
      'Trend',
      'TrendBucket',
      'Suggestions',
      'Suggestion',
      'Related',
      'RelatedTopic',
      'CrmModel',
      'Needs',
      'Need',
      'Transition',
      'StallRules',
      'StallRule',
      'Stalled',
      'StalledEntry',
      'Audiences',
      'Audience',
      'AudienceBackfill',
      'AudienceMembers',
      'AudienceMember',
    ]);
  });

  it('answers each endpoint with its contract shape, by $ref', async () => {
    const d = await doc();
    const json = (path: string, method = 'get') => d.paths[path]![method]!.responses['200']!.content!['application/json']!.schema;
    expect(json('/v1/people/{person}')).toEqual(ref('Person'));
    expect(json('/v1/people/{person}', 'delete')).toEqual(ref('Erased'));
    expect(json('/v1/people/{person}/export')).toEqual(ref('PersonExport'));
    expect(json('/v1/topics')).toEqual(ref('Topics'));
    expect(json('/v1/topics/{topic}/funnel')).toEqual(ref('Funnel'));
    expect(json('/v1/topics/{topic}/needs')).toEqual(ref('Needs'));
    expect(json('/v1/people/{person}/suggestions')).toEqual(ref('Suggestions'));
    expect(json('/v1/topics/{topic}/related')).toEqual(ref('Related'));
    expect(json('/v1/crm/model')).toEqual(ref('CrmModel'));
    expect(d.paths['/v1/transitions/stream']!.get!.responses['200']!.content!['text/event-stream']!.schema).toEqual(ref('Transition'));
    expect(d.paths['/v1/topics/{topic}/funnel']!.get!.responses['404']!.content!['application/json']!.schema).toEqual(ref('Error'));
  });

  it('keeps nested references, formats and descriptions', async () => {
    const s = (await doc()).components.schemas;
    const person = s.Person!.properties!;
    expect(person.dialogues).toEqual({ type: 'array', items: ref('Dialogue'), description: 'Most recently active first.' });
    expect(person.recentTransitions!.items).toEqual(ref('PastTransition'));
    expect(person.rfm!.properties!.lastPurchase).toEqual({ type: 'string', format: 'date-time' });
    expect(person.ltv).toEqual(ref('Ltv'));
    expect(s.CrmModel!.properties!.computedAt).toEqual({ type: ['string', 'null'], format: 'date-time', description: 'null: not computed yet.' });
    expect(s.Dialogue!.properties!.started).toEqual({ type: 'string', format: 'date-time' });
    expect(s.Topics!.properties!.topics!.items).toEqual(ref('TopicSummary'));
    expect(s.Needs!.properties!.needs!.items).toEqual(ref('Need'));
    expect(s.Needs!.properties!.truncated!.description).toBe('Always false: the whole list is ranked, however long (kept for the clients that read it).');
    expect(s.Need!.properties!.stageReachedAt).toEqual({ type: ['string', 'null'], format: 'date-time' });
    expect(s.Transition!.properties!.at).toEqual({ type: 'number', description: 'epoch ms' });
    // Zod's own metadata keys stay out of the document.
    expect(JSON.stringify(s)).not.toMatch(/"id":"(Person|Dialogue|Need)"/);
  });

  it('validates what the API answers with the same schemas', () => {
    const person: shapes.Person = {
      person: 'v-alice',
      linkedIds: [],
      traits: { plan: 'pro' },
      dialogues: [
        {
          topic: 't',
          stage: 'intro',
          started: '2026-06-01T00:00:00.000Z',
          lastActivity: '2026-06-01T00:00:00.000Z',
          firstReached: { intro: '2026-06-01T00:00:00.000Z' },
          counts: { intro: 1 },
          channels: ['web'],
          signals: { inquiry: { count: 1, open: true } },
        },
      ],
      rfm: null,
      rfmScores: null,
      rfmScale: 'fixed',
      ltv: { toDate: 0, projected: null, horizonDays: 365, model: null },
      recentTransitions: [],
    };
    expect(shapes.Person.parse(person)).toEqual(person);
    expect(shapes.Person.safeParse({ ...person, rfmScores: { recency: 6, frequency: 1, monetary: 1, code: '611' } }).success).toBe(false);
  });
});
