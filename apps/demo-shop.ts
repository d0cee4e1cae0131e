import { Hono, type Context } from 'hono';
import { html, raw } from 'hono/html';

/**
 * A small shop for trying the tracker: two products, each with an intro, a specs page and a
 * checkout, plus buttons that carry data-topic/data-stage hints; and a single-page-app section
 * (/spa) that switches views with history.pushState and shows the visitor's dialogues live.
 * Served by `npm start`.
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
<nav><a href="/">Shop</a><a href="/spa">Single-page shop</a><a href="/dashboard">Dashboard</a></nav>
${body}
</body></html>`;

/**
 * The single-page shop. Views by path: /spa (list), /spa/:sku (intro), /spa/:sku/specs (detail),
 * /spa/:sku/checkout (purchase). The "Your dialogues" panel polls /v1/people/<visitor id>, the id
 * the snippet keeps in localStorage under `clickfold` (`visitor|session|last activity|user`).
 */
const SPA_BODY = html`<h1>Single-page shop</h1>
<p>Same products, no page loads: each view is a <code>history.pushState</code>, each button carries
<code>data-topic</code>/<code>data-stage</code> hints. Watch your stage per product change on the right.</p>
<div style="display:flex;gap:2rem;align-items:flex-start">
<main id="view" style="flex:2"></main>
<aside class="card" style="flex:1"><h2 style="margin-top:0">Your dialogues</h2>
<p><small>visitor <code id="me">(not tracked yet)</code></small></p><div id="dialogues"><small>nothing yet</small></div></aside>
</div>
<script>
(() => {
  const products = ${raw(JSON.stringify(PRODUCTS))};
  const view = document.getElementById('view');
  const esc = (s) => String(s).replace(/[&<>"']/g, (ch) => '&#' + ch.charCodeAt(0) + ';');
  const hint = (p, stage) => 'data-topic="product:' + esc(p.sku) + '" data-stage="' + stage + '"';
  function render() {
    const [, , sku, sub] = location.pathname.split('/');
    const p = products.find((x) => x.sku === sku);
    if (!p) {
      view.innerHTML = products.map((x) =>
        '<div class="card"><h2>' + esc(x.name) + '</h2><p>' + esc(x.blurb) + '</p>' +
        '<button data-go="/spa/' + esc(x.sku) + '" ' + hint(x, 'intro') + '>Have a look</button></div>').join('');
    } else if (sub === 'specs') {
      view.innerHTML = '<h2>' + esc(p.name) + ': specs</h2><ul><li>Price: ' + p.price + ' EUR</li><li>Weight: light</li></ul>' +
        '<button data-go="/spa/' + esc(p.sku) + '/checkout" ' + hint(p, 'purchase') + '>Go to checkout</button> ' +
        '<button data-back>Back</button>';
    } else if (sub === 'checkout') {
      view.innerHTML = '<h2>Checkout: ' + esc(p.name) + '</h2><p>Total: ' + p.price + ' EUR</p>' +
        '<button id="spa-pay" data-pay="' + esc(p.sku) + '" ' + hint(p, 'purchase') + '>Pay</button> ' +
        '<button data-back>Back</button>';
    } else {
      view.innerHTML = '<h2>' + esc(p.name) + '</h2><p>' + esc(p.blurb) + '</p>' +
        '<button data-go="/spa/' + esc(p.sku) + '/specs" ' + hint(p, 'detail') + '>Show the specs</button> ' +
        '<button data-go="/spa">All products</button>';
    }
  }
  document.addEventListener('click', (e) => {
    const b = e.target.closest('button');
    if (!b) return;
    if (b.dataset.go) {
      history.pushState(null, '', b.dataset.go);
      render();
    } else if (b.dataset.back !== undefined) {
      history.back();
    } else if (b.dataset.pay) {
      const p = products.find((x) => x.sku === b.dataset.pay);
      window.clickfold.push(['track', 'Order Completed', { sku: p.sku }, p.price]);
      b.disabled = true;
      b.textContent = 'Paid, thank you';
    }
  });
  addEventListener('popstate', render);
  render();

  // The panel: who am I, and where do I stand per product.
  const visitor = () => { try { return (localStorage.getItem('clickfold') || '').split('|')[0]; } catch { return ''; } };
  async function refresh() {
    const id = visitor();
    if (!id || id === '!') return;
    document.getElementById('me').textContent = id;
    const res = await fetch('/v1/people/' + encodeURIComponent(id)).catch(() => null);
    if (!res || !res.ok) return;
    const person = await res.json();
    document.getElementById('dialogues').innerHTML = '<table>' + person.dialogues.map((d) =>
      '<tr><td>' + esc(d.topic) + '</td><td><b>' + esc(d.stage) + '</b></td></tr>').join('') + '</table>';
  }
  setInterval(refresh, 1500);
  refresh();
})();
</script>`;

/**
 * On-site personalisation: a banner that follows the visitor's stage of this product, from the
 * snippet's `stages` callback (its add-on, t-stages.js), within a click of it changing.
 */
const banner = (p: (typeof PRODUCTS)[number]) => html`<div id="stage-banner" class="card" data-stage-now="none" style="background:#f4f8ff">
    Welcome! ${p.name} in a minute: see its specs.
  </div>
  <script>
    clickfold.push(['stages', (stages) => {
      const stage = stages['product:${raw(p.sku)}'];
      const el = document.getElementById('stage-banner');
      const text = ${raw(
        JSON.stringify({
          intro: `Welcome! ${p.name} in a minute: see its specs.`,
          detail: `Questions about ${p.name}? Compare sizes, or ask us anything.`,
          purchase: `Thank you for buying ${p.name}! Here is how to care for it.`,
        }).replace(/</g, '\u003c'),
      )}[stage];
      if (!el || !text) return;
      el.dataset.stageNow = stage;
      el.textContent = text;
    }]);
  </script>`;

export function createDemoShop(): Hono {
  const app = new Hono();
  const find = (sku: string) => PRODUCTS.find((p) => p.sku === sku);

  app.get('/', (c) =>
    c.html(
      page(
        'Welcome',
        html`<h1>Demo shop</h1>
          <p>Click through a product: its intro, its specs, its checkout. Then look yourself up in the dashboard
            or at <code>/v1/people/&lt;your visitor id&gt;</code>. The <a href="/spa">single-page shop</a> does the
            same without page loads and shows your stages as they change.</p>
          ${PRODUCTS.map((p) => html`<div class="card"><h2><a href="/products/${p.sku}">${p.name}</a></h2><p>${p.blurb}</p></div>`)}`,
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
          ${banner(p)}
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
          ${banner(p)}
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
          ${banner(p)}
          <p>Total: ${p.price} EUR</p>
          <button id="pay" data-topic="product:${p.sku}" data-stage="purchase"
            onclick="clickfold.push(['track','Order Completed',{sku:'${raw(p.sku)}'},${p.price}])">Pay</button>`,
      ),
    );
  });

  // The single-page section: one HTML document for /spa and everything under it; a small script
  // renders the view for the current path and moves between views with history.pushState, so the
  // snippet sees SPA page views, and its buttons carry data-topic/data-stage hints (the default
  // topic map has no URL rules for /spa, so the hints are what places the visitor on the ladder).
  const spa = (c: Context) => c.html(page('Single-page shop', SPA_BODY));
  app.get('/spa', spa);
  app.get('/spa/*', spa);

  return app;
}
