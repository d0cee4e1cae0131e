import { Hono } from 'hono';
import { html, raw } from 'hono/html';

/**
 * A small shop for trying the tracker: two products, each with an intro, a specs page and a
 * checkout, plus buttons that carry data-topic/data-stage hints. Served by `npm start`.
 */
export const PRODUCTS = [
  { sku: 'sku-1', name: 'Trail Runner 2', blurb: 'A light shoe for rough paths.', price: 129 },
  { sku: 'sku-2', name: 'Summit Jacket', blurb: 'Wind- and waterproof, packs into its pocket.', price: 249 },
] as const;

const page = (title: string, body: ReturnType<typeof html>) => html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${title} · Demo shop</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;color:#222}
nav a{margin-right:1rem} .card{border:1px solid #ddd;border-radius:8px;padding:1rem;margin:1rem 0}
button{font:inherit;padding:.4rem .9rem;border-radius:6px;border:1px solid #888;background:#f5f5f5;cursor:pointer}
</style>
<script>window.clickfold=window.clickfold||[];</script>
<script async src="/t.js" data-site="demo" data-endpoint="/v1/collect"></script>
</head>
<body>
<nav><a href="/">Shop</a><a href="/dashboard">Dashboard</a></nav>
${body}
</body></html>`;

export function createDemoShop(): Hono {
  const app = new Hono();
  const find = (sku: string) => PRODUCTS.find((p) => p.sku === sku);

  app.get('/', (c) =>
    c.html(
      page(
        'Welcome',
        html`<h1>Demo shop</h1>
          <p>Click through a product: its intro, its specs, its checkout. Then look yourself up in the dashboard
            or at <code>/v1/people/&lt;your visitor id&gt;</code>.</p>
          ${PRODUCTS.map(
            (p) => html`<div class="card"><h2><a href="/products/${p.sku}">${p.name}</a></h2><p>${p.blurb}</p></div>`,
          )}`,
      ),
    ),
  );

  app.get('/products/:sku', (c) => {
    const p = find(c.req.param('sku'));
    if (!p) return c.notFound();
    return c.html(
      page(
        p.name,
        html`<h1>${p.name}</h1>
          <p>${p.blurb}</p>
          <p><a href="/products/${p.sku}/specs">See the full specs</a></p>
          <button data-topic="product:${p.sku}" data-stage="detail" id="compare">Compare sizes</button>`,
      ),
    );
  });

  app.get('/products/:sku/specs', (c) => {
    const p = find(c.req.param('sku'));
    if (!p) return c.notFound();
    return c.html(
      page(
        `${p.name} specs`,
        html`<h1>${p.name}: specs</h1>
          <ul><li>Price: ${p.price} EUR</li><li>Weight: light</li></ul>
          <p><a href="/checkout/${p.sku}">Buy now</a></p>`,
      ),
    );
  });

  app.get('/checkout/:sku', (c) => {
    const p = find(c.req.param('sku'));
    if (!p) return c.notFound();
    return c.html(
      page(
        `Checkout ${p.name}`,
        html`<h1>Checkout: ${p.name}</h1>
          <p>Total: ${p.price} EUR</p>
          <button id="pay" data-topic="product:${p.sku}" data-stage="purchase"
            onclick="clickfold.push(['track','Order Completed',{sku:'${raw(p.sku)}'},${p.price}])">Pay</button>`,
      ),
    );
  });

  return app;
}
