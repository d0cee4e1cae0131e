import { Agent, request, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';

/**
 * HTTP clients that behave as the ones a shutdown must not wait for: a kept-alive connection left
 * idle, an event stream that never ends, a browser's EventSource that reconnects on its pooled
 * connection, and raw requests that are still arriving when the server is told to stop.
 */
export interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
  /** Once the body ended, or the connection broke. */
  ended: Promise<'end' | 'error'>;
}

export class Clients {
  private readonly agents: Agent[] = [];
  private readonly sockets: Socket[] = [];

  /** A keep-alive agent with one connection: its requests share it, as a browser's do. */
  agent(): Agent {
    const a = new Agent({ keepAlive: true, maxSockets: 1 });
    this.agents.push(a);
    return a;
  }

  get(url: string, path: string, agent: Agent, headers: Record<string, string> = {}): Promise<Answer> {
    const { hostname, port } = new URL(url);
    return new Promise((resolve, reject) => {
      const req = request({ host: hostname, port, path, agent, headers }, (res) => {
        const answer: Answer = {
          status: res.statusCode!,
          headers: res.headers,
          body: '',
          ended: new Promise((done) => {
            res.on('data', (d: Buffer) => (answer.body += d.toString()));
            res.on('end', () => done('end'));
            res.on('error', () => done('error'));
            res.on('aborted', () => done('error'));
          }),
        };
        resolve(answer);
      });
      req.on('error', reject);
      req.end();
    });
  }

  /** An event stream, once its first event (`ready`) came. */
  async stream(url: string, path: string, headers: Record<string, string> = {}): Promise<Answer> {
    const s = await this.get(url, path, this.agent(), { accept: 'text/event-stream', ...headers });
    for (let i = 0; i < 500 && !s.body.includes('event: ready'); i++) await new Promise((r) => setTimeout(r, 10));
    if (!s.body.includes('event: ready')) throw new Error(`no ready event on ${path} (status ${s.status}): ${s.body.slice(0, 200)}`);
    return s;
  }

  /**
   * A browser's EventSource: whenever the stream ends it opens it again, on the same kept-alive
   * connection, until it cannot connect any more. Resolves with the number of streams it opened.
   */
  reconnecting(url: string, path: string, headers: Record<string, string> = {}): { running: Promise<number>; stop(): void } {
    const agent = this.agent();
    let stop = false;
    const running = (async () => {
      let n = 0;
      while (!stop) {
        try {
          const s = await this.get(url, path, agent, { accept: 'text/event-stream', ...headers });
          n++;
          await s.ended;
        } catch {
          return n;
        }
      }
      return n;
    })();
    return { running, stop: () => (stop = true) };
  }

  /** A connection that made one request and stays open, idle. */
  async idle(url: string, path: string): Promise<void> {
    const a = await this.get(url, path, this.agent());
    await a.ended;
  }

  /**
   * A request written in two parts: `head` now, `rest` when `send` is called (a slow client, or
   * one that never finishes). `answer` is the raw response, or null when the connection was cut first.
   */
  raw(url: string, head: string): { send(rest: string): void; answer: Promise<string | null> } {
    const { hostname, port } = new URL(url);
    const socket = connect(Number(port), hostname);
    this.sockets.push(socket);
    socket.write(head);
    const answer = new Promise<string | null>((resolve) => {
      let data = '';
      socket.on('data', (d: Buffer) => (data += d.toString()));
      socket.on('error', () => {});
      socket.on('close', () => resolve(data === '' ? null : data));
    });
    return { send: (rest) => socket.write(rest), answer };
  }

  close(): void {
    for (const a of this.agents.splice(0)) a.destroy();
    for (const s of this.sockets.splice(0)) s.destroy();
  }
}
