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
