/**
 * Compile-time constants, replaced by esbuild `define` (see build.ts). Only the entry point
 * (src/index.ts) reads them, so the pure helpers stay importable from unit tests.
 */
/** The global name and the storage key prefix: `window.clickfold`, `clickfold`, `clickfold_q`. */
declare const __KEY__: string;
/** Appended to the script's own origin when `data-endpoint` is not set. */
declare const __PATH__: string;
/** A batch is sent as soon as this many events wait. */
declare const __BATCH__: number;
/** ...or this long after the first of them was queued. */
declare const __FLUSH_MS__: number;
/** Events per request (fetch or beacon); keeps bodies far below the 64 KiB keepalive budget. */
declare const __CHUNK__: number;
/** Unsent events kept in memory and localStorage; beyond it the oldest are dropped. */
declare const __MAX_QUEUE__: number;
/** A session rolls over after this much inactivity. */
declare const __SESSION_MS__: number;
