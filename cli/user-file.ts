/**
 * Import a user's TypeScript (or JavaScript) definition file and return its
 * exports. TypeScript goes through the swc loader hooks in ts-hooks.ts.
 */
import { register } from 'node:module';
import { existsSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { TsbpfError } from '../sdk/errors.js';

let registered = false;

export async function importUserFile(file: string): Promise<Record<string, unknown>> {
  const path = resolvePath(file);
  if (!existsSync(path)) {
    throw new TsbpfError('INVALID_ARGUMENT', `no such file: ${file}`, { hint: 'give the path of a .ts or .js file that exports a filter definition' });
  }
  if (!registered) {
    register(new URL('./ts-hooks.js', import.meta.url).href, import.meta.url);
    // Source maps make rule positions point at the user's .ts lines.
    process.setSourceMapsEnabled(true);
    registered = true;
  }
  try {
    return (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (cause) {
    if (cause instanceof TsbpfError) throw cause;
    throw new TsbpfError('INVALID_ARGUMENT', `could not load ${file}: ${(cause as Error).message}`, { cause });
  }
}
