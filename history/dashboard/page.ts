/**
 * The dashboard's HTML and CSS. Static: client.ts fills the sections from the query API.
 * Written for a marketer who never saw the code: plain words, every section says what it shows.
 */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Customer interest · clickfold</title>
<link rel="stylesheet" href="/dashboard/app.css">
<script defer src="/dashboard/app.js"></script>
</head>
<body>
<header class="top">
  <div>
    <h1>Customer interest</h1>
    <p class="sub">What people are interested in, how far they got, and who to contact next. Updated the moment they click.</p>
  </div>
  <div id="access" class="access" aria-live="polite"></div>
</header>

<div id="keygate" class="keygate" hidden>
  <form id="keyform" class="card">
    <h2>Enter your access key</h2>
    <p>This dashboard is protected. Ask whoever runs clickfold for an API key, paste it here, and press Continue. It is kept only in this browser tab.</p>
    <label for="keyinput">API key</label>
    <input id="keyinput" type="password" autocomplete="off" spellcheck="false" required>
    <p id="keyerror" class="error" hidden></p>
    <button type="submit">Continue</button>
  </form>
</div>

<main id="main" class="grid">
  <div class="col-wide">
    <section class="card" id="topics-section" aria-labelledby="topics-title">
      <div class="section-head">
        <h2 id="topics-title">Products and topics</h2>
        <label class="inline">Show people active
          <select id="window">
            <option value="">at any time</option>
            <option value="1d">in the last 24 hours</option>
            <option value="7d">in the last 7 days</option>
            <option value="30d">in the last 30 days</option>
          </select>
        </label>
      </div>
      <p class="hint">Each box is one product or topic. The bars show how far people got: how many had a first look,
        how many of them went on to the next step, and so on. The percentage between two bars is the share who went on.</p>
      <div id="topics" class="topics"><p class="empty">Loading…</p></div>
    </section>

    <section class="card" id="trend-section" aria-labelledby="trend-title">
      <div class="section-head">
        <h2 id="trend-title">Over time</h2>
        <form id="trendform" class="controls">
          <label>Product or topic <select id="trend-topic"></select></label>
          <label>Per
            <select id="trend-by">
              <option value="hour">hour (last 2 days)</option>
              <option value="day">day (last 30 days)</option>
            </select>
          </label>
        </form>
      </div>
      <p class="hint">How many people moved a step further each hour or each day, one line per step. Hover over the chart for the numbers.</p>
      <p id="trend-summary" class="summary"></p>
      <div id="trend-chart" class="trend-chart"></div>
      <ul id="trend-totals" class="trend-totals"></ul>
    </section>

    <section class="card" id="needs-section" aria-labelledby="needs-title">
      <h2 id="needs-title">Who to contact</h2>
      <p class="hint">People who got to a step but not to the next one: interested, but not there yet. The most promising come
        first: those seen recently and often.</p>
      <form id="needsform" class="controls">
        <label>Product or topic <select id="needs-topic"></select></label>
        <label>Got as far as <select id="needs-stage"></select></label>
        <label>Seen in the last
          <select id="needs-active">
            <option value="1d">24 hours</option>
            <option value="7d" selected>7 days</option>
            <option value="30d">30 days</option>
          </select>
        </label>
        <button type="submit">Show</button>
        <button type="button" id="needs-csv" class="secondary">Download for a spreadsheet (CSV)</button>
      </form>
      <p id="needs-summary" class="summary"></p>
      <table id="needs-table" class="table" hidden>
        <thead><tr><th>Person</th><th>Got as far as</th><th>Last seen</th><th>Interactions</th><th>Channels</th></tr></thead>
        <tbody id="needs-rows"></tbody>
      </table>
      <p id="needs-empty" class="empty" hidden></p>
      <button type="button" id="needs-more" class="secondary" hidden>Show more</button>
    </section>

    <section class="card" id="quiet-section" aria-labelledby="quiet-title">
      <h2 id="quiet-title">Gone quiet</h2>
      <p class="hint">People who got to a step and then stopped: no clicks for as long as a stall rule of yours says. A reminder now may bring
        them back. Whoever clicks again leaves the list. Most recently gone quiet first.</p>
      <p id="quiet-none" class="hint" hidden>No stall rules yet. To list people who go quiet, add one to the topic map and restart:
        <code>"stalls": [{"name": "quiet-at-detail", "stage": "detail", "after": "3d"}]</code></p>
      <div id="quiet-body" hidden>
        <form id="quietform" class="controls">
          <label>Product or topic <select id="quiet-topic"></select></label>
          <label>Rule <select id="quiet-rule"></select></label>
          <button type="button" id="quiet-csv" class="secondary">Download for a spreadsheet (CSV)</button>
        </form>
        <p id="quiet-summary" class="summary"></p>
        <table id="quiet-table" class="table" hidden>
          <thead><tr><th>Person</th><th>Stopped at</th><th>Quiet since</th><th>Flagged as quiet</th></tr></thead>
          <tbody id="quiet-rows"></tbody>
        </table>
        <p id="quiet-empty" class="empty" hidden></p>
        <button type="button" id="quiet-more" class="secondary" hidden>Show more</button>
      </div>
    </section>

    <section class="card" id="audiences-section" aria-labelledby="audiences-title">
      <h2 id="audiences-title">Audiences</h2>
      <p class="hint">Groups of people defined by what they did, kept up to date as they click: someone joins the moment they qualify and
        leaves when they no longer do. Click a name to see who is in it.</p>
      <p id="aud-unavailable" class="empty" hidden></p>
      <table id="aud-table" class="table" hidden>
        <thead><tr><th>Audience</th><th>People</th><th>Status</th><th></th></tr></thead>
        <tbody id="aud-rows"></tbody>
      </table>
      <p id="aud-empty" class="empty" hidden>No audiences yet: make one below.</p>
      <div id="aud-members-box" class="members" hidden>
        <h3 id="aud-members-title"></h3>
        <p id="aud-members-summary" class="summary"></p>
        <table id="aud-members" class="table" hidden>
          <thead><tr><th>Person</th><th>Joined</th></tr></thead>
          <tbody id="aud-member-rows"></tbody>
        </table>
        <button type="button" id="aud-more" class="secondary" hidden>Show more</button>
      </div>
      <form id="audform" class="audform">
        <h3>Make or change an audience</h3>
        <p class="hint">Give it a name (lower-case letters, digits, - and _) and paste its definition, for example
          <code>{"atLeast": "detail", "notReached": "purchase", "activeWithin": "7d"}</code>. Saving under a name that exists replaces it.
          Needs a key that may change data.</p>
        <label>Name <input id="aud-name" required spellcheck="false" autocomplete="off" placeholder="e.g. hesitant-buyers"></label>
        <label>Definition (JSON) <textarea id="aud-def" rows="5" required spellcheck="false"></textarea></label>
        <p id="aud-error" class="error" role="alert" hidden></p>
        <p id="aud-saved" class="summary" hidden></p>
        <div><button type="submit">Save audience</button></div>
      </form>
    </section>

    <section class="card" id="person-section" aria-labelledby="person-title">
      <h2 id="person-title">Look up a person</h2>
      <p class="hint">Type a visitor or customer id (or click a name in the lists) to see everything they looked at.</p>
      <form id="personform" class="controls">
        <input id="person-id" placeholder="e.g. v-alice or a customer number" aria-label="Visitor or customer id" spellcheck="false">
        <button type="submit">Look up</button>
      </form>
      <div id="person"></div>
    </section>
  </div>

  <div class="col-narrow">
    <section class="card" id="live-section" aria-labelledby="live-title">
      <div class="section-head">
        <h2 id="live-title">Happening now</h2>
        <span id="live-status" class="status">connecting…</span>
      </div>
      <p class="hint">The latest steps, and every time someone moves a step further, or goes quiet, it shows up here at once. No need to reload the page.</p>
      <ol id="live" class="live" aria-live="polite"></ol>
      <p id="live-empty" class="empty">Nothing yet. Keep this page open: new steps appear here as they happen.</p>
    </section>

    <section class="card" id="help-section" aria-labelledby="help-title">
      <h2 id="help-title">How to read this page</h2>
      <p class="hint">Every click on your site (and in your e-mails) is filed under the product or topic it is about, as a step:</p>
      <ol id="steps" class="steps"></ol>
      <p class="hint">People only ever move forward. Someone quiet for a long while (30 days by default) starts again from the first step.
        Nothing here needs a report to be run: it is the state of every conversation right now.</p>
    </section>

  </div>
</main>
<footer class="foot">Data from the clickfold query API · <a href="/v1/openapi.json">API description</a></footer>
</body>
</html>
`;

/**
 * uPlot's stylesheet (uplot 1.6.32, dist/uPlot.min.css, MIT), copied: the page serves one
 * stylesheet, and its CSP allows no other. The trend swatch colours are the chart's (client.ts TREND_COLOURS).
 */
const UPLOT_CSS = `.uplot,.uplot *,.uplot *::before,.uplot *::after{box-sizing:border-box}.uplot{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;line-height:1.5;width:min-content}.u-title{text-align:center;font-size:18px;font-weight:bold}.u-wrap{position:relative;user-select:none}.u-over,.u-under{position:absolute}.u-under{overflow:hidden}.uplot canvas{display:block;position:relative;width:100%;height:100%}.u-axis{position:absolute}.u-legend{font-size:14px;margin:auto;text-align:center}.u-inline{display:block}.u-inline *{display:inline-block}.u-inline tr{margin-right:16px}.u-legend th{font-weight:600}.u-legend th>*{vertical-align:middle;display:inline-block}.u-legend .u-marker{width:1em;height:1em;margin-right:4px;background-clip:padding-box !important}.u-inline.u-live th::after{content:":";vertical-align:middle}.u-inline:not(.u-live) .u-value{display:none}.u-series>*{padding:4px}.u-series th{cursor:pointer}.u-legend .u-off>*{opacity:.3}.u-select{background:rgba(0,0,0,.07);position:absolute;pointer-events:none}.u-cursor-x,.u-cursor-y{position:absolute;left:0;top:0;pointer-events:none;will-change:transform}.u-hz .u-cursor-x,.u-vt .u-cursor-y{height:100%;border-right:1px dashed #607D8B}.u-hz .u-cursor-y,.u-vt .u-cursor-x{width:100%;border-bottom:1px dashed #607D8B}.u-cursor-pt{position:absolute;top:0;left:0;border-radius:50%;border:0 solid;pointer-events:none;will-change:transform;background-clip:padding-box !important}.u-axis.u-off,.u-select.u-off,.u-cursor-x.u-off,.u-cursor-y.u-off,.u-cursor-pt.u-off{display:none}`;

export const PAGE_CSS = `
:root{--ink:#1d2433;--muted:#5f6b7a;--line:#e3e7ee;--bg:#f5f7fb;--card:#fff;--accent:#2f6fde;--accent-soft:#dbe7fb;--good:#1f9d55;--warn:#b7791f;--bad:#c53030}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
h1{font-size:1.5rem;margin:0}
h2{font-size:1.1rem;margin:0 0 .25rem}
h3{font-size:1rem;margin:0}
.top{display:flex;justify-content:space-between;align-items:flex-start;gap:1rem;padding:1.25rem 1.5rem;background:var(--card);border-bottom:1px solid var(--line)}
.sub{margin:.2rem 0 0;color:var(--muted)}
.access{font-size:.85rem;color:var(--muted);text-align:right;max-width:22rem}
.access button{margin-left:.5rem}
.grid{display:grid;grid-template-columns:minmax(0,2fr) minmax(0,1fr);gap:1.25rem;padding:1.25rem 1.5rem;align-items:start}
@media (max-width:900px){.grid{grid-template-columns:1fr}}
.col-wide,.col-narrow{display:flex;flex-direction:column;gap:1.25rem;min-width:0}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:1rem 1.25rem}
.section-head{display:flex;justify-content:space-between;align-items:center;gap:1rem;flex-wrap:wrap}
.hint{color:var(--muted);margin:.25rem 0 .9rem;font-size:.9rem}
.empty{color:var(--muted);font-style:italic;margin:.5rem 0}
.error{color:var(--bad)}
.summary{margin:.5rem 0;color:var(--muted)}
label{font-size:.9rem;color:var(--muted)}
label.inline{display:flex;align-items:center;gap:.4rem}
select,input,button,textarea{font:inherit}
select,input,textarea{padding:.35rem .5rem;border:1px solid #c8cfdb;border-radius:6px;background:#fff;color:var(--ink)}
button{padding:.4rem .9rem;border-radius:6px;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer}
button.secondary{background:#fff;color:var(--accent)}
button.link{border:0;background:none;color:var(--accent);padding:0;cursor:pointer;text-decoration:underline;font:inherit}
button:disabled{opacity:.6;cursor:default}
.controls{display:flex;flex-wrap:wrap;gap:.6rem;align-items:flex-end}
.controls label{display:flex;flex-direction:column;gap:.15rem}
.controls input{min-width:18rem}
.topics{display:grid;grid-template-columns:repeat(auto-fill,minmax(18rem,1fr));gap:.9rem}
.topics>p{grid-column:1/-1}
.topic{border:1px solid var(--line);border-radius:8px;padding:.75rem .9rem}
.topic-head{display:flex;justify-content:space-between;align-items:baseline;gap:.5rem;margin-bottom:.5rem}
.topic-head h3{overflow-wrap:anywhere}
.topic-head .total{color:var(--muted);font-size:.85rem;white-space:nowrap}
.step{display:grid;grid-template-columns:9.5rem 1fr 3.2rem;align-items:center;gap:.5rem;font-size:.88rem}
.step .name{color:var(--ink)}
.bar{height:.9rem;background:var(--accent-soft);border-radius:4px;overflow:hidden}
.bar>span{display:block;height:100%;background:var(--accent);border-radius:4px}
.step .count{text-align:right;font-variant-numeric:tabular-nums;font-weight:600}
.went-on{font-size:.8rem;color:var(--muted);margin:.1rem 0 .1rem 10rem}
.table{width:100%;border-collapse:collapse;font-size:.9rem}
.table th{text-align:left;color:var(--muted);font-weight:600;border-bottom:1px solid var(--line);padding:.4rem .5rem}
.table td{border-bottom:1px solid var(--line);padding:.45rem .5rem;vertical-align:top;overflow-wrap:anywhere}
.table tr:last-child td{border-bottom:0}
.pill{display:inline-block;padding:.05rem .5rem;border-radius:999px;background:var(--accent-soft);color:#1e4fa8;font-size:.8rem;white-space:nowrap}
.status{font-size:.8rem;color:var(--muted)}
.status.on{color:var(--good)}
.status.on::before{content:"";display:inline-block;width:.5rem;height:.5rem;border-radius:50%;background:var(--good);margin-right:.35rem}
.status.off{color:var(--warn)}
.live{list-style:none;margin:0;padding:0;max-height:26rem;overflow:auto}
.live li{padding:.5rem 0;border-bottom:1px solid var(--line);font-size:.9rem}
.live li:last-child{border-bottom:0}
.live li.fresh{animation:flash 2s ease-out}
@keyframes flash{from{background:#fff6d6}to{background:transparent}}
.live .when{display:block;color:var(--muted);font-size:.8rem}
.person dl{display:grid;grid-template-columns:auto 1fr;gap:.2rem .8rem;margin:.5rem 0;font-size:.9rem}
.person dt{color:var(--muted)}
.person dd{margin:0}
.person h3{margin:.9rem 0 .3rem}
.person .next{margin:.3rem 0;padding-left:1.2rem;font-size:.9rem}
.person .next li{margin:.2rem 0}
.person .traits{width:auto;margin:.3rem 0}
.person .traits th{border:0;padding:.15rem .8rem .15rem 0}
.person .traits td{border:0;padding:.15rem 0}
.signals .pill{margin:0 .25rem .2rem 0}
.pill.open{background:#fde8e6;color:#a3261b}
.scores{display:flex;gap:.5rem;flex-wrap:wrap;margin:.3rem 0}
.score{border:1px solid var(--line);border-radius:6px;padding:.25rem .5rem;font-size:.85rem}
.score b{font-size:1rem}
.keygate{position:fixed;inset:0;background:rgba(29,36,51,.45);display:flex;align-items:center;justify-content:center;z-index:10}
.keygate[hidden]{display:none}
.keygate form{max-width:26rem;display:flex;flex-direction:column;gap:.5rem}
.foot{padding:0 1.5rem 1.5rem;color:var(--muted);font-size:.8rem}
.col-narrow{position:sticky;top:1.25rem}
.steps{margin:.25rem 0 .6rem;padding-left:1.2rem;font-size:.9rem}
.steps li{margin:.2rem 0}
.steps .muted{color:var(--muted)}
.foot a{color:var(--muted)}
code{font:.85em ui-monospace,SFMono-Regular,Menlo,monospace;background:var(--bg);border-radius:4px;padding:.05rem .3rem;overflow-wrap:anywhere}
.audform{display:flex;flex-direction:column;gap:.5rem;border-top:1px solid var(--line);margin-top:1rem;padding-top:.75rem}
.audform label{display:flex;flex-direction:column;gap:.15rem}
.audform textarea{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem;resize:vertical}
.members{margin-top:.75rem}
.table .what{display:block;color:var(--muted);font-size:.82rem}
.table .actions{white-space:nowrap;text-align:right}
.table .actions button{margin-left:.4rem}
.table .num{font-variant-numeric:tabular-nums;font-weight:600}
.table tr.selected td{background:#f0f5fe}
.progress{height:.4rem;background:var(--accent-soft);border-radius:3px;overflow:hidden;margin-top:.2rem;max-width:10rem}
.progress>span{display:block;height:100%;background:var(--accent)}
.live li.quiet{color:var(--muted)}
.trend-chart{min-height:240px}
.trend-totals{list-style:none;display:flex;flex-wrap:wrap;gap:.5rem 1.25rem;margin:.5rem 0 0;padding:0;font-size:.9rem}
.trend-totals .swatch{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin-right:.35rem;vertical-align:-.05rem}
.trend-totals b{font-variant-numeric:tabular-nums}
${UPLOT_CSS}
`;
