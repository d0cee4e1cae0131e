import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOPICS } from '../../contract/raw-event.js';
import type { Transition } from '../../contract/transition.js';
import type { RunningApp } from '../../apps/all-in-one-app.js';
import { batch, eventually, post, startTestApp, type Mode } from '../support/app.js';
import { readTopic } from '../support/kafka-read.js';

describe.each<Mode>(['real', 'cluster', 'embedded'])('transitions and identity through the whole pipeline (%s backends)', (mode) => {
  let app: RunningApp;
  const live: Transition[] = [];
  beforeAll(async () => {
    app = await startTestApp(mode);
    app.feed.subscribe({ kinds: ['stage'] }, (t) => live.push(t));
  });
  afterAll(async () => {
    await app?.stop();
  });

  const onLog = async (person: string, count: number): Promise<Transition[]> => {
    const keep = (_k: string, v: string) => {
      const t = JSON.parse(v) as Transition;
      return t.person === person ? t : undefined;
    };
    if (mode !== 'embedded') return readTopic(TOPICS.transitions, keep, (f) => f.length >= count);
    return eventually(async () => {
      const found = app.backends
        .log!.read(TOPICS.transitions)
        .flat()
        .flatMap((m) => keep('', m.value) ?? []);
      return found.length >= count ? found : undefined;
    });
  };

  it('emits one transition per stage advance, on history.transitions and on the live feed, also when a batch is retried', async () => {
    const visitor = `v-${randomUUID()}`;
    const walk = batch(visitor, [
      { type: 'page', url: '/products/sku-7' },
      { type: 'page', url: '/products/sku-7' },
      { type: 'page', url: '/products/sku-7/specs' },
      { type: 'click', url: '/products/sku-7/specs', topic: 'product:sku-7', stage: 'purchase', el: { tag: 'button', id: 'buy' } },
      { type: 'page', url: '/products/sku-7' },
    ]);
    expect((await post(app.url, walk)).status).toBe(202);
    // The client did not see the answer and sends the same batch again.
    expect((await post(app.url, walk)).status).toBe(202);

    const logged = await onLog(visitor, 3);
    expect(logged.map((t) => [t.topic, t.from, t.to])).toEqual([
      ['product:sku-7', null, 'intro'],
      ['product:sku-7', 'intro', 'detail'],
      ['product:sku-7', 'detail', 'purchase'],
    ]);
    expect(live.filter((t) => t.person === visitor).map((t) => t.id)).toEqual(logged.map((t) => t.id));

    const person = (await (await fetch(`${app.url}/v1/people/${visitor}`)).json()) as { dialogues: { counts: Record<string, number> }[] };
    expect(person.dialogues[0]!.counts).toEqual({ intro: 3, detail: 1, purchase: 1 });
  });

  it('merges the anonymous history on identify; later user-only events land on the same person', async () => {
    const visitor = `v-${randomUUID()}`;
    const user = `u-${randomUUID()}`;
    expect((await post(app.url, batch(visitor, [{ type: 'page', url: '/products/sku-8/specs' }]))).status).toBe(202);
    await eventually(async () => ((await fetch(`${app.url}/v1/people/${visitor}`)).status === 200 ? true : undefined));
    expect((await post(app.url, batch(visitor, [{ type: 'identify', user }]))).status).toBe(202);
    // A call-centre system knows only the user id.
    expect((await post(app.url, batch(user, [{ type: 'page', url: '/checkout/sku-8' }]))).status).toBe(202);

    const merged = await eventually(
      async () => {
        const r = await fetch(`${app.url}/v1/people/${user}`);
        if (r.status !== 200) return undefined;
        const p = (await r.json()) as { person: string; linkedIds: string[]; dialogues: { topic: string; stage: string }[] };
        return p.dialogues.find((d) => d.topic === 'product:sku-8')?.stage === 'purchase' && p.linkedIds.length ? p : undefined;
      },
      20_000,
      'the merged person at purchase',
    );
    expect(merged.linkedIds).toEqual([visitor]);
    const viaVisitor = (await (await fetch(`${app.url}/v1/people/${visitor}`)).json()) as { person: string };
    expect(viaVisitor.person).toBe(user);
  });
});
