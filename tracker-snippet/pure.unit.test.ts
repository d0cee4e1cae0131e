import { describe, expect, it, vi } from 'vitest';
import { ClickEvent, ElementContext, Props, UserSig } from '../contract/collect.js';
import { SNIPPET_VISITOR_ID } from '../contract/visitor.js';
import { clean, context, cut, parseIds, retryDelay, rid, selector, validId } from './src/pure.js';

// Node has no CSS.escape; a faithful-enough stand-in for the characters used below.
(globalThis as { CSS?: unknown }).CSS ??= { escape: (s: string) => s.replace(/[^\w-]/g, (ch) => `\\${ch}`) };

/** Just enough of an Element for the helpers: tag, id, classes, text, data-*, parent. */
function el(
  tag: string,
  attrs: { id?: string; class?: string; text?: string; href?: unknown; data?: Record<string, string> } = {},
  parent: FakeElement | null = null,
): FakeElement {
  const data = attrs.data ?? {};
  const self: FakeElement = {
    localName: tag,
    id: attrs.id ?? '',
    classList: (attrs.class ?? '').split(/\s+/).filter(Boolean),
    textContent: attrs.text ?? '',
    href: attrs.href,
    dataset: { ...data },
    parentElement: parent,
    getAttribute: (name: string) => (name === 'class' ? (attrs.class ?? null) : null),
    closest(sel: string) {
      // Only the `[id]` and `[data-x]` forms the snippet uses.
      const m = /^\[(?:data-)?([\w-]+)\]$/.exec(sel);
      for (let e: FakeElement | null = this; e; e = e.parentElement) {
        if (m && (m[1] === 'id' ? e.id : e.dataset[m[1]!] !== undefined)) return e;
      }
      return null;
    },
  };
  return self;
}
interface FakeElement {
  localName: string;
  id: string;
  classList: string[];
  textContent: string;
  href: unknown;
  dataset: Record<string, string>;
  parentElement: FakeElement | null;
  getAttribute(name: string): string | null;
  closest(sel: string): FakeElement | null;
}
const asEl = (e: FakeElement) => e as unknown as Element;

describe('cut', () => {
  it('bounds strings and leaves empty values out', () => {
    expect(cut('abcdef', 3)).toBe('abc');
    expect(cut(42, 10)).toBe('42');
    expect(cut('', 10)).toBeUndefined();
    expect(cut(null, 10)).toBeUndefined();
    expect(cut(undefined, 10)).toBeUndefined();
  });
});

describe('ids', () => {
  it('validId accepts what the contract accepts, and nothing else', () => {
    expect(validId('user@example.com')).toBe('user@example.com');
    expect(validId(42)).toBe('42');
    expect(validId('a'.repeat(64))).toBe('a'.repeat(64));
    for (const bad of ['a'.repeat(65), 'has space', '', undefined, null, {}, 'ü']) expect(validId(bad)).toBeUndefined();
  });

  it('rid makes distinct ids of 128 random bits that fit the contract, the shape GET /v1/me accepts', () => {
    const ids = new Set(Array.from({ length: 1000 }, rid));
    expect(ids.size).toBe(1000);
    for (const id of ids) {
      expect(id).toMatch(/^[\w.:@+-]{1,64}$/);
      expect(id).toMatch(SNIPPET_VISITOR_ID);
      expect(id).toMatch(/^\d{30,40}$/);
    }
  });

  it('parseIds keeps a visitor id an older snippet stored (96 bits as digits), which GET /v1/me still accepts', () => {
    const old = '3141592653589793238462643';
    expect(parseIds(`${old}|s1|123`)[0]).toBe(old);
    expect(old).toMatch(SNIPPET_VISITOR_ID);
  });

  it('parseIds keeps valid stored ids and replaces malformed ones', () => {
    const sig = 'ab'.repeat(32);
    expect(parseIds(`v1|s1|123|u1|${sig}`)).toEqual(['v1', 's1', 123, 'u1', sig]);
    // Stored by an older snippet: no signature.
    expect(parseIds('v1|s1|123|u1')).toEqual(['v1', 's1', 123, 'u1', undefined]);
    expect(parseIds('v1|s1|123|')).toEqual(['v1', 's1', 123, undefined, undefined]);
    // A signature is only bounded to what the contract accepts (a wrong one costs the user id, not the batch).
    expect(parseIds(`v1|s1|123|u1|${'f'.repeat(500)}`)[4]).toBe('f'.repeat(128));
    expect(UserSig.safeParse(parseIds(`v1|s1|123|u1|${'f'.repeat(500)}`)[4]).success).toBe(true);
    const [visitor, session, last, user] = parseIds('bad id|<script>|x|');
    expect(visitor).toMatch(SNIPPET_VISITOR_ID);
    expect([session, last, user]).toEqual([undefined, 0, undefined]);
    // The opt-out marker is not an id: a visitor who opts back in gets a fresh one.
    expect(parseIds('!')[0]).not.toBe('!');
    expect(parseIds(null)[0]).toMatch(SNIPPET_VISITOR_ID);
  });
});

describe('clean', () => {
  it('keeps flat values the contract accepts and drops the rest', () => {
    const out = clean({ sku: 'a', n: 1, ok: true, none: null, nested: { a: 1 }, list: [1], fn: () => 1, big: 10n, long: 'x'.repeat(600) });
    expect(out).toEqual({ sku: 'a', n: 1, ok: true, none: null, long: 'x'.repeat(512) });
    expect(Props.safeParse(out).success).toBe(true);
  });

  it('drops reserved and oversized keys and stops at 32 properties', () => {
    const many = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, i]));
    expect(Object.keys(clean(many)!)).toHaveLength(32);
    const tricky = JSON.parse('{"constructor":"x","prototype":"y","__proto__":"z","ok":1}') as object;
    expect(clean({ ...tricky, ['k'.repeat(65)]: 1, '': 2 })).toEqual({ ok: 1 });
  });

  it('returns undefined for nothing usable', () => {
    expect(clean(undefined)).toBeUndefined();
    expect(clean(null)).toBeUndefined();
    expect(clean({ a: {} })).toBeUndefined();
  });
});

describe('retryDelay', () => {
  /** retryDelay with Math.random() answering `random` (its jitter). */
  const delay = (fails: number, retryAfter: string | null, random: number) => {
    const spy = vi.spyOn(Math, 'random').mockReturnValue(random);
    try {
      return retryDelay(fails, retryAfter);
    } finally {
      spy.mockRestore();
    }
  };
  it('honours Retry-After in seconds', () => {
    expect(delay(1, '3', 0)).toBe(3000);
    expect(delay(5, '1', 0.5)).toBe(1500);
  });

  it('backs off exponentially to a minute without one', () => {
    expect([1, 2, 3, 4].map((n) => delay(n, null, 0))).toEqual([1000, 2000, 4000, 8000]);
    expect(delay(20, null, 0)).toBe(60_000);
    expect(delay(1, 'garbage', 0)).toBe(1000);
    expect(delay(1, null, 0.999)).toBeLessThan(2000);
  });
});

describe('selector and element context', () => {
  it('names the element by id, else by tag and two classes, under the nearest ancestor with an id', () => {
    const root = el('section', { id: 'plans' });
    const card = el('div', { class: 'card pro' }, root);
    const button = el('button', { class: 'btn btn-primary big', text: 'Buy' }, card);
    expect(selector(asEl(button))).toBe('section#plans button.btn.btn-primary');
    expect(selector(asEl(el('button', { id: 'pay' }, root)))).toBe('section#plans button#pay');
    expect(selector(asEl(el('a', {})))).toBe('a');
    expect(selector(asEl(el('button', { id: ':r1:' })))).toBe('button#\\:r1\\:');
  });

  it('reports a hinted button as the contract wants it', () => {
    const region = el('section', { data: { topic: 'plan:pro', campaign: 'spring', variant: 'a' } });
    const button = el('button', { id: 'choose', class: 'btn', text: '  Choose \n\n  Pro  ', data: { stage: 'detail', variant: 'b' } }, region);
    const ctx = context(asEl(button), asEl(region), asEl(button));
    expect(ctx).toEqual({
      tag: 'button',
      id: 'choose',
      cls: 'btn',
      text: 'Choose Pro',
      href: undefined,
      sel: 'button#choose',
      // The ancestor's other data-* attributes, the element's own winning; hints are not repeated here.
      data: { campaign: 'spring', variant: 'b' },
    });
    expect(ElementContext.safeParse(JSON.parse(JSON.stringify(ctx))).success).toBe(true);
  });

  it('bounds long texts and ignores an SVG link href', () => {
    const long = el('a', { text: 'word '.repeat(100), href: 'https://example.com/x' });
    const ctx = context(asEl(long), null);
    expect((ctx.text as string).length).toBe(100);
    expect(ctx.href).toBe('https://example.com/x');
    expect(context(asEl(el('a', { href: { baseVal: '/x', animVal: '/x' } })), null).href).toBeUndefined();
  });

  it('makes click events that pass the contract', () => {
    const e = { type: 'click', id: rid(), ts: Date.now(), url: 'https://shop.example/p', el: context(asEl(el('a', { text: 'x' })), null) };
    expect(ClickEvent.safeParse(JSON.parse(JSON.stringify(e))).success).toBe(true);
  });
});
