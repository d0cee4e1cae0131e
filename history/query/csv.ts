/**
 * CSV for spreadsheets (RFC 4180: comma, CRLF, fields with a comma, quote or line break quoted,
 * quotes doubled), safe to open in Excel or Sheets: a cell that starts with = + - @ (or a tab or
 * carriage return) would run as a formula, so it gets a leading apostrophe, which spreadsheets show
 * as plain text (OWASP "CSV injection"). Person ids and topics come from clicks, so they are untrusted.
 */
export type CsvValue = string | number | null | undefined;

const FORMULA_START = /^[=+\-@\t\r]/;

export function csvCell(value: CsvValue): string {
  if (value === null || value === undefined) return '';
  let s = typeof value === 'number' ? String(value) : value;
  // Numbers are written by us and are never formulas; a negative number stays a number.
  if (typeof value === 'string' && FORMULA_START.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function csvLine(values: readonly CsvValue[]): string {
  return `${values.map(csvCell).join(',')}\r\n`;
}

export function toCsv(header: readonly string[], rows: readonly (readonly CsvValue[])[]): string {
  return csvLine(header) + rows.map(csvLine).join('');
}

/**
 * A body that reads a list only when the client takes more (the exports of needs, stalled
 * dialogues and audience members): `pull` is called when the stream's small queue has room, so a
 * slow client holds the reads back (back-pressure) and memory stays one page; a client that goes
 * away cancels it, which ends the list. A read that fails (a needs listing that expired under a
 * very slow reader) ends the body with an error: the client sees a cut transfer, not a short list.
 */
export function pullStream<R>(head: string, rows: AsyncGenerator<R>, line: (r: R) => string): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  let first = head;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let chunk = first;
        first = '';
        // About 64 KiB per enqueue: fewer, larger writes than one per row.
        while (chunk.length < 65_536) {
          const next = await rows.next();
          if (next.done) {
            if (chunk) controller.enqueue(enc.encode(chunk));
            controller.close();
            return;
          }
          chunk += line(next.value);
        }
        controller.enqueue(enc.encode(chunk));
      },
      async cancel() {
        await rows.return(undefined);
      },
    },
    { highWaterMark: 1 },
  );
}
