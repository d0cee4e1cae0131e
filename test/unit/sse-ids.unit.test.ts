import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import type { Transition } from '../../contract/transition.js';
import { LiveFeed } from '../../history/transitions/live-feed.js';
import { streamTransitions } from '../../history/transitions/sse.js';

/** Reads server-sent events until `n` transition events arrived, then cancels the stream. */
async function events(res: Response, n: number): Promise<string[]> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  while ((text.match(/^event: transition$/gm) ?? []).length < n) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value);
  }
  await reader.cancel();
  return text.split('\n\n').filter((e) => /^event: transition$/m.test(e));
}

describe('live transitions over SSE', () => {
  it('never lets a line break in a transition id (a record from elsewhere on history.transitions) end an event early', async () => {
    const feed = new LiveFeed();
    const app = new Hono().get('/stream', (c) => streamTransitions(c, feed, {}));
    const res = await app.request('/stream');
    const base: Transition = { id: 'p|product:a|x|detail', person: 'p', topic: 'product:a', from: 'intro', to: 'detail', at: 1, channel: 'web' };
    setTimeout(() => feed.publish([{ ...base, id: 'forged\nevent: transition\ndata: {"person":"victim"}' }, base]), 20);
    const got = await events(res, 2);
    feed.close();
    expect(got).toHaveLength(2);
    // The forged id is left out; the data line carries the whole transition as one JSON line.
    expect(got[0]).not.toMatch(/^id:/m);
    expect(got[0]!.split('\n').filter((l) => l.startsWith('data:'))).toHaveLength(1);
    expect(
      JSON.parse(
        got[0]!
          .split('\n')
          .find((l) => l.startsWith('data:'))!
          .slice(5),
      ).person,
    ).toBe('p');
    expect(got[1]).toMatch(/^id: p\|product:a\|x\|detail$/m);
  });
});
