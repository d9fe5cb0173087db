// Command-line options of a bench script, parsed as node:util parseArgs does. --help (-h)
// prints the script's opening comment, which says what it measures and how to run it;
// an unknown or malformed option ends with that text and exit code 64, not a stack trace.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** The opening `//` comment of a script's source, without the slashes. */
export function usageOf(source: string): string {
  const lines: string[] = [];
  for (const line of source.split('\n')) {
    if (!line.startsWith('//')) break;
    lines.push(line.replace(/^\/\/ ?/, ''));
  }
  return lines.join('\n');
}

export function benchArgs<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  const script = process.argv[1] ?? 'bench';
  const usage = () => usageOf(readFileSync(script, 'utf8'));
  const args = config.args ?? process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${usage()}\n`);
    process.exit(0);
  }
  try {
    return parseArgs(config);
  } catch (err) {
    process.stderr.write(`${basename(script)}: ${(err as Error).message}\n\n${usage()}\n`);
    process.exit(64);
  }
}
