import { Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import { afterEach, describe, expect, it } from 'vitest';
import { closeServer, listen } from '../../lib/serve.js';
import { Clients } from '../support/http-clients.js';

/**
 * Every process stops through closeServer (lib/serve.ts): whatever the clients do, open event
 * streams and idle keep-alive connections do not hold it, requests in flight get the grace period
 * and no more. (test/int/shutdown.int.test.ts sends SIGTERM to the processes themselves.)
 */
let release: () => void = () => {};
const app = new Hono();
app.get('/plain', (c) => c.text('ok'));
app.post('/echo', async (c) => c.text(await c.req.text()));
// Never ends by itself, like a live feed with nothing to say.
app.get('/stream', (c) =>
  streamSSE(c, async (s) => {
    await s.writeSSE({ event: 'ready', data: '{}' });
    while (!s.aborted) await s.sleep(50);
  }),
);
app.get('/slow', async (c) => {
  await new Promise<void>((r) => (release = r));
  return c.text('finished');
});

const clients = new Clients();
afterEach(() => clients.close());

const start = async () => {
  const l = await listen(app, 0, '127.0.0.1');
  return { ...l, url: `http://127.0.0.1:${l.port}` };
};

describe('closeServer', () => {
  it('ends event streams and idle keep-alive connections at once, and lets a request in flight finish', async () => {
    const l = await start();
    await clients.idle(l.url, '/plain');
    const stream = await clients.stream(l.url, '/stream');
    const slow = clients.get(l.url, '/slow', clients.agent());
    await new Promise((r) => setTimeout(r, 50));

    let closed = false;
    const closing = closeServer(l.server, { graceMs: 60_000 }).then(() => (closed = true));
    // The stream is over although nothing ended it, while the slow request still runs.
    expect(await stream.ended).toBeDefined();
    expect(closed).toBe(false);
    release();
    const answer = await slow;
    expect(answer.status).toBe(200);
    expect(await answer.ended).toBe('end');
    expect(answer.body).toBe('finished');
    // Answered while the server drains: the connection closes after it.
    expect(answer.headers.connection).toBe('close');
    await closing;
    await expect(clients.get(l.url, '/plain', clients.agent())).rejects.toThrow(/ECONNREFUSED/);
  });

  it('a client that keeps reconnecting its stream on a kept-alive connection does not hold the server', async () => {
    const l = await start();
    const browser = clients.reconnecting(l.url, '/stream');
    await new Promise((r) => setTimeout(r, 100));
    await closeServer(l.server, { graceMs: 60_000 });
    browser.stop();
    expect(await browser.running).toBeGreaterThan(0);
  });

  it('cuts a request still open after the grace period', async () => {
    const l = await start();
    // Headers sent, the body never comes.
    const stalled = clients.raw(l.url, 'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"a":');
    await new Promise((r) => setTimeout(r, 50));
    await closeServer(l.server, { graceMs: 200 });
    // The sender got no answer: it still owns its events and sends them again.
    expect(await stalled.answer).toBeNull();
  });
});
