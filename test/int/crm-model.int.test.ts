import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { BgNbd, GammaGamma } from '../../history/crm/ltv.js';
import { computeModel, MAX_FIT_PURCHASES } from '../../history/crm/model.js';
import { quantileScale, thresholdsOf } from '../../history/crm/rfm-quantiles.js';
import { encodeRfm } from '../../history/fold/codec.js';
import type { Rfm } from '../../history/fold/fold.js';
import type { BatchRecord } from '../../history/fold/person-batch.js';
import { createQueryApp } from '../../history/query/app.js';
import { MemoryHistoryStore } from '../../history/store/memory.js';
import { restoreStore, storeLines } from '../../history/store/memory-snapshot.js';
import { RedisHistoryStore } from '../../history/store/redis.js';
import { type HistoryStore, keys } from '../../history/store/store.js';
import { startCrmModelJob } from '../../history/worker/crm-model.js';
import { createLogger } from '../../lib/logger.js';
import { syntheticCustomers } from '../support/clv-population.js';
import { redisUrl } from '../support/services.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 5, 30, 12);
const TRUE_BG: BgNbd = { r: 0.8, alpha: 20, a: 1.6, b: 4 };
const TRUE_GG: GammaGamma = { p: 6, q: 4, gamma: 15 };
/** As test/unit/ltv.unit.test.ts: the same seed and size draw the same customers. */
const PEOPLE = 6000;
const logger = createLogger('test', 'silent');
const population = syntheticCustomers(42, PEOPLE, TRUE_BG, TRUE_GG);

/** Every purchase of the population as a purchase event (the top stage, with its value). */
function records(): BatchRecord[] {
  const out: BatchRecord[] = [];
  population.forEach((c, i) => {
    const first = NOW - Math.round(c.age * DAY);
    c.purchases.forEach((p, k) => {
      const ts = first + Math.round(p.day * DAY);
      out.push({ offset: out.length, person: `c${i}`, event: { id: `c${i}-${k}`, ts, channel: 'web', topic: 'product:sku-1', stage: 2, value: p.value } });
    });
  });
  return out;
}

/** The fold's RFM inputs of the population, computed directly. */
const direct: Rfm[] = population.map((c) => {
  const first = NOW - Math.round(c.age * DAY);
  const times = c.purchases.map((p) => first + Math.round(p.day * DAY));
  return { first, last: Math.max(...times), count: c.purchases.length, total: c.purchases.reduce((s, p) => s + p.value, 0) };
});

const within = (fit: number, truth: number) => Math.abs(fit / truth - 1);

for (const kind of ['memory', 'Redis'] as const) {
  describe(`CRM model job on the ${kind} store`, () => {
    let redis: Redis | undefined;
    const open = (): HistoryStore => {
      if (kind === 'memory') return new MemoryHistoryStore(FOLD_OPTIONS, () => NOW);
      const s = new RedisHistoryStore(redis!, FOLD_OPTIONS, `crm-${randomUUID().slice(0, 8)}:`);
      s.clock = () => NOW;
      return s;
    };
    const fold = async (store: HistoryStore, rs: BatchRecord[]) => {
      for (let i = 0; i < rs.length; i += 2000) await (await store.foldBatch('clicks.raw/0', rs.slice(i, i + 2000))).published();
    };

    beforeAll(() => {
      if (kind === 'Redis') redis = new Redis(redisUrl());
    });
    afterAll(async () => {
      await redis?.quit();
    });

    it('fits a synthetic population back to its true parameters, and its quintiles are those computed directly', { timeout: 120_000 }, async () => {
      const store = open();
      await fold(store, records());
      const job = startCrmModelJob({ store, logger, everyMs: 600_000, sample: 20_000, clock: () => NOW, manual: true });
      const model = (await job.run())!;
      await job.stop();
      expect(model.n).toBe(PEOPLE);
      expect(model.purchasers).toBe(PEOPLE);
      // Sampled inputs are the fold's, which are the population's (values summed in another order: to the cent).
      const expected = thresholdsOf(quantileScale(direct));
      expect(model.thresholds!.last).toEqual(expected.last);
      expect(model.thresholds!.count).toEqual(expected.count);
      for (const [i, t] of model.thresholds!.total.entries()) expect(t).toBeCloseTo(expected.total[i]!, 6);
      const fit = model.ltv!;
      expect(fit.n).toBe(PEOPLE);
      // The tolerances the README states: BG/NBD's r and alpha within 20%, a and b (which the data
      // pin down less) within 35%; Gamma-Gamma within 25%, its mean value per purchase within 5%.
      expect(within(fit.bgNbd.r, TRUE_BG.r)).toBeLessThan(0.2);
      expect(within(fit.bgNbd.alpha, TRUE_BG.alpha)).toBeLessThan(0.2);
      expect(within(fit.bgNbd.a, TRUE_BG.a)).toBeLessThan(0.35);
      expect(within(fit.bgNbd.b, TRUE_BG.b)).toBeLessThan(0.35);
      const mean = (g: GammaGamma) => (g.p * g.gamma) / (g.q - 1);
      expect(within(mean(fit.gammaGamma), mean(TRUE_GG))).toBeLessThan(0.05);
      expect(within(fit.gammaGamma.p, TRUE_GG.p)).toBeLessThan(0.25);
      expect(within(fit.gammaGamma.q, TRUE_GG.q)).toBeLessThan(0.25);
      expect(within(fit.gammaGamma.gamma, TRUE_GG.gamma)).toBeLessThan(0.25);
      console.log(`CRM model (${kind}): ${PEOPLE} purchasers in ${model.tookMs} ms`, JSON.stringify(fit));
      expect(await store.crmModel()).toEqual(model);

      // The person view and the API use it.
      const app = createQueryApp({ store, logger, now: () => NOW, dashboard: false, crm: { horizonDays: 180, everySeconds: 600 } });
      const person = (await (await app.request('/v1/people/c1')).json()) as { rfmScale: string; ltv: { projected: number; horizonDays: number } };
      expect(person.rfmScale).toBe('quantiles');
      expect(person.ltv.horizonDays).toBe(180);
      expect(person.ltv.projected).toBeGreaterThanOrEqual(0);
      const view = (await (await app.request('/v1/crm/model')).json()) as { everySeconds: number; ltv: { n: number } };
      expect(view).toMatchObject({ everySeconds: 600, horizonDays: 180, ltv: { n: PEOPLE } });

      if (store instanceof MemoryHistoryStore) {
        // The snapshot keeps the purchasers and the model; a snapshot of before them restores with none.
        const lines = [...storeLines(store)];
        const again = new MemoryHistoryStore(FOLD_OPTIONS);
        restoreStore(again, lines);
        expect(await again.crmModel()).toEqual(model);
        expect((await again.purchasers(10)).total).toBe(PEOPLE);
        const old = new MemoryHistoryStore(FOLD_OPTIONS);
        restoreStore(
          old,
          lines.filter((l) => !l.startsWith('["pu"') && !l.startsWith('["crm"')),
        );
        expect(await old.crmModel()).toBeNull();
      }
    });

    it('keeps the fixed scale and projects nothing below the minimum sample', async () => {
      const store = open();
      await fold(
        store,
        records().filter((r) => Number(r.person.slice(1)) < 15),
      );
      const job = startCrmModelJob({ store, logger, everyMs: 600_000, sample: 20_000, clock: () => NOW, manual: true });
      const model = (await job.run())!;
      expect(model.n).toBe(15);
      expect(model.thresholds).toBeNull();
      expect(model.ltv).toBeNull();
      const app = createQueryApp({ store, logger, now: () => NOW, dashboard: false });
      const person = (await (await app.request('/v1/people/c1')).json()) as { rfmScale: string; ltv: unknown };
      expect(person.rfmScale).toBe('fixed');
      expect(person.ltv).toMatchObject({ projected: null, model: null });
      const view = (await (await app.request('/v1/crm/model')).json()) as Record<string, unknown>;
      expect(view).toMatchObject({ rfmScale: 'fixed', thresholds: null, ltv: null, n: 15, minSample: 20 });
      // An erased person leaves the purchasers at once.
      await store.erase('c1', NOW);
      const left = await store.purchasers(100);
      expect(left.total).toBe(14);
      expect(left.sample.map((x) => x.person)).not.toContain('c1');
    });

    it('computes in one job at a time: the lease', async () => {
      const store = open();
      await fold(
        store,
        records().filter((r) => Number(r.person.slice(1)) < 100),
      );
      const saves = vi.spyOn(store, 'setCrmModel');
      const jobs = [0, 1, 2].map(() => startCrmModelJob({ store, logger, everyMs: 600_000, sample: 20_000, clock: () => NOW, manual: true }));
      const models = await Promise.all(jobs.map((j) => j.run()));
      expect(saves).toHaveBeenCalledTimes(1);
      // The others read it from the store on their next round.
      const again = await Promise.all(jobs.map((j) => j.run()));
      expect(saves).toHaveBeenCalledTimes(1);
      for (const m of again) expect(m).toEqual(models.find((x) => x !== null));
    });

    it('leaves out a history with 10^6 purchases or a huge value, with the reason, and still fits the others', { timeout: 60_000 }, async () => {
      const store = open();
      await fold(
        store,
        records().filter((r) => Number(r.person.slice(1)) < 1000),
      );
      // A huge value through the fold; 10^6 purchases written as a stored history (folding them would take minutes).
      await fold(store, [
        { offset: 1e6, person: 'whale', event: { id: 'w1', ts: NOW - 10 * DAY, channel: 'web', topic: 'product:sku-1', stage: 2, value: 1e15 } },
      ]);
      const bot: Rfm = { first: NOW - 300 * DAY, last: NOW - DAY, count: 1_000_000, total: 3e7 };
      if (store instanceof MemoryHistoryStore) {
        store.state().people.set('bot', { m: encodeRfm(bot) });
        store.state().purchasers.set('bot', bot.last);
      } else {
        const ns = (store as unknown as { ns: string }).ns;
        await redis!.hset(keys.person(ns, 'bot'), 'm', encodeRfm(bot));
        await redis!.zadd(keys.purchasers(ns), bot.last, 'bot');
      }
      const job = startCrmModelJob({ store, logger, everyMs: 600_000, sample: 20_000, clock: () => NOW, manual: true });
      const model = (await job.run())!;
      expect(model.n).toBe(1002);
      expect(model.excluded).toEqual({ manyPurchases: 1, extremeValue: 1, nonPositiveValue: 0, noHistory: 0 });
      expect(model.ltv!.n).toBe(1000);
      expect(Number.isFinite(model.ltv!.bgNbd.r) && Number.isFinite(model.ltv!.gammaGamma.p)).toBe(true);
      // Same fit as without them.
      const clean = computeModel(direct.slice(0, 1000), NOW, 1000);
      expect(model.ltv!.bgNbd.r).toBeCloseTo(clean.ltv!.bgNbd.r, 3);
      const app = createQueryApp({ store, logger, now: () => NOW, dashboard: false });
      const whale = (await (await app.request('/v1/people/whale')).json()) as { ltv: unknown; rfmScores: { monetary: number } };
      expect(whale.ltv).toMatchObject({ toDate: 1e15, projected: null, model: 'bg-nbd+gamma-gamma' });
      expect(whale.rfmScores.monetary).toBe(5);
      expect(MAX_FIT_PURCHASES).toBeLessThan(bot.count);
    });
  });
}
