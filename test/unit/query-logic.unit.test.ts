import { describe, expect, it } from 'vitest';
import { checkApiAccess } from '../../history/query/auth.js';
import { csvCell, toCsv } from '../../history/query/csv.js';
import { transitionId } from '../../history/fold/fold.js';
import { computeFunnel } from '../../history/query/funnel.js';
import { parseDuration, parseTime } from '../../history/query/params.js';
import { dialogueTransitions, recentTransitions } from '../../history/query/recent-transitions.js';
import { rfmScores } from '../../history/query/rfm.js';
import { signWebhook, verifyWebhook } from '../../history/transitions/webhook-signature.js';
import { parseEnv } from '../../lib/config.js';

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 5, 10, 12);
const LADDER = ['intro', 'detail', 'purchase'];

describe('RFM scores', () => {
  it('scores each of recency, frequency and value from 1 to 5 on the documented thresholds', () => {
    expect(rfmScores({ last: NOW - 2 * DAY, count: 12, total: 1500 }, NOW)).toEqual({ recency: 5, frequency: 5, monetary: 5, code: '555' });
    expect(rfmScores({ last: NOW - 7 * DAY, count: 1, total: 49.99 }, NOW)).toEqual({ recency: 5, frequency: 1, monetary: 1, code: '511' });
    expect(rfmScores({ last: NOW - 8 * DAY, count: 2, total: 50 }, NOW).code).toBe('422');
    expect(rfmScores({ last: NOW - 31 * DAY, count: 3, total: 200 }, NOW).code).toBe('333');
    expect(rfmScores({ last: NOW - 100 * DAY, count: 5, total: 999.99 }, NOW).code).toBe('244');
    expect(rfmScores({ last: NOW - 181 * DAY, count: 10, total: 1000 }, NOW).code).toBe('155');
  });
});

describe('CSV', () => {
  it('quotes commas, quotes and line breaks (RFC 4180)', () => {
    expect(csvCell('plain')).toBe('plain');
    expect(csvCell('a,b')).toBe('"a,b"');
    expect(csvCell('say "hi"')).toBe('"say ""hi"""');
    expect(csvCell('two\nlines')).toBe('"two\nlines"');
    expect(csvCell(null)).toBe('');
    expect(
      toCsv(
        ['a', 'b'],
        [
          ['x', 1],
          [null, 'y,z'],
        ],
      ),
    ).toBe('a,b\r\nx,1\r\n,"y,z"\r\n');
  });

  it('defuses cells a spreadsheet would run as a formula, numbers stay numbers', () => {
    expect(csvCell('=1+1')).toBe("'=1+1");
    expect(csvCell('+49 30 1234')).toBe("'+49 30 1234");
    expect(csvCell('-2')).toBe("'-2");
    expect(csvCell('@SUM(A1)')).toBe("'@SUM(A1)");
    expect(csvCell('\t=cmd')).toBe("'\t=cmd");
    expect(csvCell('=HYPERLINK("http://x","y")')).toBe('"\'=HYPERLINK(""http://x"",""y"")"');
    expect(csvCell(-2)).toBe('-2');
    expect(csvCell('a=b')).toBe('a=b');
  });
});

describe('time parameters', () => {
  it('reads durations', () => {
    expect(parseDuration('7d')).toBe(7 * DAY);
    expect(parseDuration('30m')).toBe(30 * 60_000);
    expect(parseDuration('2w')).toBe(14 * DAY);
    expect(parseDuration('0d')).toEqual({ error: 'a duration must be longer than zero' });
    expect(parseDuration('7 days')).toMatchObject({ error: expect.stringContaining('"7 days" is not a duration') });
  });

  it('reads points in time: ISO dates (UTC without a zone), epoch ms, or a duration ago', () => {
    expect(parseTime('2026-06-01', NOW)).toBe(Date.UTC(2026, 5, 1));
    expect(parseTime('2026-06-01T09:30', NOW)).toBe(Date.UTC(2026, 5, 1, 9, 30));
    expect(parseTime('2026-06-01T09:30:00+02:00', NOW)).toBe(Date.UTC(2026, 5, 1, 7, 30));
    expect(parseTime('1780000000000', NOW)).toBe(1780000000000);
    expect(parseTime('7d', NOW)).toBe(NOW - 7 * DAY);
    expect(parseTime('yesterday', NOW)).toMatchObject({ error: expect.stringContaining('"yesterday" is not an ISO 8601 date') });
    expect(parseTime('2026-13-45', NOW)).toHaveProperty('error');
  });
});

describe('funnel', () => {
  it('counts people who reached at least each stage, and the share who went on', () => {
    expect(computeFunnel(LADDER, [5, 3, 2])).toEqual({
      people: 10,
      overallConversion: 0.2,
      stages: [
        { stage: 'intro', atStage: 5, reached: 10, conversionToNext: 0.5 },
        { stage: 'detail', atStage: 3, reached: 5, conversionToNext: 0.4 },
        { stage: 'purchase', atStage: 2, reached: 2, conversionToNext: null },
      ],
    });
    expect(computeFunnel(LADDER, [0, 0, 0])).toMatchObject({
      people: 0,
      overallConversion: null,
      stages: [{ conversionToNext: null }, { conversionToNext: null }, {}],
    });
    // Someone who jumped straight to purchase has reached every stage below it.
    expect(computeFunnel(LADDER, [0, 0, 1]).stages.map((s) => s.reached)).toEqual([1, 1, 1]);
  });
});

describe('recent transitions, read back from a dialogue', () => {
  const iso = (ms: number) => new Date(ms).toISOString();
  const T = Date.UTC(2026, 5, 1);
  const view = (firstReached: Record<string, number>, started = T) => ({
    topic: 'product:sku-1',
    stage: 'purchase',
    started: iso(started),
    lastActivity: iso(T + 100),
    firstReached: Object.fromEntries(Object.entries(firstReached).map(([k, v]) => [k, iso(v)])),
    counts: {},
    channels: ['web'],
    signals: {},
  });

  it('gives each first arrival at a higher stage, with the worker’s transition ids', () => {
    expect(dialogueTransitions('p', view({ intro: T, detail: T + 10, purchase: T + 20 }), LADDER)).toEqual([
      { id: transitionId('p', 'product:sku-1', T, 'intro'), topic: 'product:sku-1', from: null, to: 'intro', at: iso(T) },
      { id: transitionId('p', 'product:sku-1', T, 'detail'), topic: 'product:sku-1', from: 'intro', to: 'detail', at: iso(T + 10) },
      { id: transitionId('p', 'product:sku-1', T, 'purchase'), topic: 'product:sku-1', from: 'detail', to: 'purchase', at: iso(T + 20) },
    ]);
  });

  it('skips stages reached after a higher one (no transition), and lists the newest first across dialogues', () => {
    expect(dialogueTransitions('p', view({ detail: T, intro: T + 5, purchase: T + 9 }), LADDER).map((t) => [t.from, t.to])).toEqual([
      [null, 'detail'],
      ['detail', 'purchase'],
    ]);
    const other = { ...view({ intro: T + 50 }, T + 50), topic: 'product:sku-2' };
    const recent = recentTransitions('p', [view({ intro: T, detail: T + 60 }), other], LADDER, 2);
    expect(recent.map((t) => [t.topic, t.to])).toEqual([
      ['product:sku-1', 'detail'],
      ['product:sku-2', 'intro'],
    ]);
  });
});

describe('webhook signatures', () => {
  const secret = 'a-webhook-secret-of-some-length';
  it('verifies its own signature, and refuses a changed body, another secret, an old timestamp or junk', () => {
    const body = '{"transitions":[]}';
    const header = signWebhook(secret, body, NOW / 1000);
    expect(header).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    expect(verifyWebhook(secret, header, body, { now: NOW })).toEqual({ ok: true });
    expect(verifyWebhook(secret, header, `${body} `, { now: NOW })).toEqual({ ok: false, reason: 'signature does not match' });
    expect(verifyWebhook('another-secret-entirely', header, body, { now: NOW })).toEqual({ ok: false, reason: 'signature does not match' });
    expect(verifyWebhook(secret, header, body, { now: NOW + 301_000 })).toEqual({ ok: false, reason: 'timestamp outside the tolerance' });
    expect(verifyWebhook(secret, 'v1=abc', body, { now: NOW })).toEqual({ ok: false, reason: 'malformed signature header' });
    expect(verifyWebhook(secret, undefined, body, { now: NOW })).toEqual({ ok: false, reason: 'no signature header' });
  });
});

describe('API access at start', () => {
  const env = (vars: Record<string, string>) => parseEnv({ LOG_LEVEL: 'silent', ...vars });
  it('refuses the real stack without keys, and the embedded mode without keys off loopback', () => {
    expect(() => checkApiAccess(env({}), 'real')).toThrow(/API_KEYS is not set: the query API on the real stack needs at least one key/);
    expect(() => checkApiAccess(env({ HOST: '0.0.0.0' }), 'embedded')).toThrow(/HOST=0.0.0.0 is not a loopback address/);
    expect(checkApiAccess(env({}), 'embedded')).toEqual({ open: true });
    expect(checkApiAccess(env({ API_KEYS: 'k'.repeat(16) }), 'real')).toEqual({ open: false });
    expect(checkApiAccess(env({ API_READ_KEYS: 'r'.repeat(16), HOST: '0.0.0.0' }), 'embedded')).toEqual({ open: false });
  });

  it('refuses short keys and bad webhook URLs with the variable and the reason', () => {
    expect(() => env({ API_KEYS: 'short' })).toThrow(/API_KEYS: each key needs at least 16 characters/);
    expect(() => env({ WEBHOOK_URLS: 'ftp://x' })).toThrow(/WEBHOOK_URLS: each entry must be an http/);
    expect(env({ API_KEYS: ` ${'a'.repeat(16)} , ${'b'.repeat(16)} ` }).API_KEYS).toEqual(['a'.repeat(16), 'b'.repeat(16)]);
  });
});
