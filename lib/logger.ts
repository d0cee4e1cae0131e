import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON lines on stdout; `LOG_LEVEL=silent` in tests keeps the output readable. */
export function createLogger(name: string, level = 'info'): Logger {
  return pino({ name, level, base: { svc: name }, timestamp: pino.stdTimeFunctions.isoTime });
}
