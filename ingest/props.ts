import { LIMITS } from '../contract/collect.js';

type Scalar = string | number | boolean | null;

/**
 * Segment properties nest (`products[0].sku`); the raw record keeps flat, bounded props. Nested
 * keys are joined with dots (`products.0.sku`), strings are cut to the value limit, and past the
 * property limit the rest is counted in `_dropped` instead of stored. The input was bounded
 * (depth, size, reserved keys) by the contract before it gets here.
 */
export function flattenProps(input: Record<string, unknown> | undefined): Record<string, Scalar> | undefined {
  if (!input) return undefined;
  const out: Record<string, Scalar> = {};
  let count = 0;
  let dropped = 0;
  const room = LIMITS.propsCount - 1; // one slot stays free for `_dropped`

  const put = (key: string, v: Scalar) => {
    if (count >= room || key.length === 0 || key.length > LIMITS.propKeyLength) {
      dropped++;
      return;
    }
    out[key] = typeof v === 'string' && v.length > LIMITS.propValueLength ? `${v.slice(0, LIMITS.propValueLength - 1)}…` : v;
    count++;
  };
  const walk = (prefix: string, v: unknown) => {
    if (v === null || typeof v === 'string' || typeof v === 'boolean') put(prefix, v);
    else if (typeof v === 'number') put(prefix, Number.isFinite(v) ? v : null);
    else if (Array.isArray(v)) {
      v.forEach((x, i) => {
        walk(`${prefix}.${i}`, x);
      });
    } else if (typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(prefix ? `${prefix}.${k}` : k, x);
  };
  walk('', input);
  if (dropped > 0) out._dropped = dropped;
  return count > 0 || dropped > 0 ? out : undefined;
}

/** A money amount from Segment's conventional fields (revenue, value, total), or undefined. */
export function moneyOf(props: Record<string, unknown> | undefined): number | undefined {
  if (!props) return undefined;
  for (const k of ['revenue', 'value', 'total']) {
    const v = props[k];
    const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
    if (Number.isFinite(n) && n >= 0) return n;
  }
  return undefined;
}
