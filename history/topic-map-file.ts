import { readFile } from 'node:fs/promises';
import { DEFAULT_TOPIC_MAP, TopicMapConfig } from './topic-map.js';

/** Loads and validates a topic-map JSON file; errors name the file, the line and the reason. */
export async function loadTopicMap(path: string | undefined): Promise<TopicMapConfig> {
  if (!path) return DEFAULT_TOPIC_MAP;
  const text = await readFile(path, 'utf8');
  return parseTopicMap(text, path);
}

export function parseTopicMap(text: string, file = '<topic map>'): TopicMapConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    const m = /position (\d+)/.exec((err as Error).message);
    const line = m ? lineAt(text, Number(m[1])) : 1;
    throw new Error(`${file}:${line}: not valid JSON: ${(err as Error).message}`);
  }
  const r = TopicMapConfig.safeParse(json);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `${file}:${lineOfPath(text, i.path)}: ${i.path.join('.') || '(top)'}: ${i.message}`);
    throw new Error(lines.join('\n'));
  }
  return r.data;
}

function lineAt(text: string, offset: number): number {
  return text.slice(0, offset).split('\n').length;
}

/**
 * Finds the line of a JSON path by walking the text: good enough for hand-written maps, where the
 * owner needs "line 12" more than an exact column.
 */
export function lineOfPath(text: string, path: PropertyKey[]): number {
  let pos = 0;
  for (const key of path) {
    if (typeof key === 'number') {
      // Skip to the key-th element of the array that starts at or after pos.
      let depth = 0;
      let index = 0;
      let i = text.indexOf('[', pos);
      if (i < 0) break;
      i++;
      let inString = false;
      for (; i < text.length; i++) {
        const ch = text[i];
        if (inString) {
          if (ch === '\\') i++;
          else if (ch === '"') inString = false;
          continue;
        }
        if (ch === '"') inString = true;
        else if (ch === '[' || ch === '{') depth++;
        else if (ch === ']' || ch === '}') {
          if (depth === 0) break;
          depth--;
        } else if (ch === ',' && depth === 0) index++;
        if (index === key && depth === 0 && /\S/.test(ch ?? '') && ch !== ',') {
          pos = i;
          break;
        }
        if (index === key && ch === ',' ) {
          pos = i + 1;
          if (key > 0) {
            const next = text.slice(i + 1).search(/\S/);
            pos = i + 1 + Math.max(0, next);
            break;
          }
        }
      }
    } else {
      const i = text.indexOf(`"${String(key)}"`, pos);
      if (i < 0) break;
      pos = i;
    }
  }
  return lineAt(text, pos);
}
