import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { cors } from 'hono/cors';
import type { LogProducer } from '../lib/log.js';
import type { Logger } from '../lib/logger.js';
import { collectHandler } from './collect.js';
import { httpError, onError } from './errors.js';
import { snippetRoute } from './snippet-route.js';

export interface IngestOptions {
  producer: LogProducer;
  logger: Logger;
  maxBodyBytes: number;
  retryAfterSeconds: number;
  clientIp?: (c: Context) => string | undefined;
}

/** The ingest HTTP surface. I/O only through `producer`, so tests can run it without a port. */
export function createIngestApp(opts: IngestOptions): Hono {
  const app = new Hono();
  app.onError(onError(opts.logger));

  app.get('/healthz', (c) => c.json({ ok: true }));
  app.get('/readyz', (c) => (opts.producer.ready() ? c.json({ ready: true }) : c.json({ ready: false }, 503)));

  app.route('/', snippetRoute());

  app.use('/v1/collect', cors({ origin: (origin) => origin || '*', allowMethods: ['POST', 'OPTIONS'], maxAge: 86400 }));
  app.post(
    '/v1/collect',
    bodyLimit({
      maxSize: opts.maxBodyBytes,
      onError: () => {
        throw httpError(413, 'body_too_large', `the body is larger than ${opts.maxBodyBytes} bytes`);
      },
    }),
    collectHandler({
      producer: opts.producer,
      logger: opts.logger,
      retryAfterSeconds: opts.retryAfterSeconds,
      clientIp: opts.clientIp ?? (() => undefined),
    }),
  );
  return app;
}
