import { readFile } from 'node:fs/promises';
import { findNodeAtLocation, parseTree, printParseErrorCode, type ParseError } from 'jsonc-parser';
import { DEFAULT_TOPIC_MAP, TopicMapConfig } from './topic-map.js';

/** Loads and validates a topic-map JSON file; errors name the file, the line and the reason. */
export async function loadTopicMap(path: string | undefined): Promise<TopicMapConfig> {
  if (!path) return DEFAULT_TOPIC_MAP;
  const text = await readFile(path, 'utf8');
  return parseTopicMap(text, path);
}

/**
 * Parses a topic map. jsonc-parser keeps node offsets, so both a syntax error and a schema error
 * point at a line a site owner can open (JSON.parse's messages differ between Node versions).
 */
export function parseTopicMap(text: string, file = '<topic map>'): TopicMapConfig {
  const errors: ParseError[] = [];
  const tree = parseTree(text, errors, { allowTrailingComma: false, disallowComments: true });
  if (errors.length > 0 || !tree) {
    const e = errors[0];
    const line = e ? lineAt(text, e.offset) : 1;
    throw new Error(`${file}:${line}: not valid JSON: ${e ? printParseErrorCode(e.error) : 'empty'}`);
  }
  const r = TopicMapConfig.safeParse(JSON.parse(text));
  if (!r.success) {
    const lines = r.error.issues.map((i) => {
      const path = i.path.filter((k): k is string | number => typeof k !== 'symbol');
      let node = findNodeAtLocation(tree, path);
      // A missing key has no node: point at its nearest existing parent.
      for (let n = path.length - 1; !node && n >= 0; n--) node = findNodeAtLocation(tree, path.slice(0, n));
      return `${file}:${lineAt(text, node?.offset ?? 0)}: ${path.join('.') || '(top)'}: ${i.message}`;
    });
    throw new Error(lines.join('\n'));
  }
  return r.data;
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}
