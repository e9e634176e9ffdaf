/**
 * Module loader hooks (module.register) that let Node import a user's .ts
 * file directly: @swc/core strips the types in memory, no tsc step and no
 * temporary files. A user file that imports 'tsbpf' gets this package even
 * when it lives outside any project that installed tsbpf.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { transform } from '@swc/core';

interface ResolveContext {
  parentURL?: string;
  conditions: string[];
}
type NextResolve = (specifier: string, context: ResolveContext) => Promise<{ url: string; format?: string }>;
type NextLoad = (url: string, context: { format?: string }) => Promise<{ format: string; source?: string | Buffer }>;

const selfIndex = new URL('../index.js', import.meta.url).href;
const selfCni = new URL('../cni/index.js', import.meta.url).href;
const selfFn = new URL('../sdk/fn/index.js', import.meta.url).href;

export async function resolve(specifier: string, context: ResolveContext, next: NextResolve): Promise<{ url: string; format?: string; shortCircuit?: boolean }> {
  try {
    return await next(specifier, context);
  } catch (e) {
    if (specifier === 'tsbpf') return { url: selfIndex, shortCircuit: true };
    if (specifier === 'tsbpf/cni') return { url: selfCni, shortCircuit: true };
    if (specifier === 'tsbpf/fn') return { url: selfFn, shortCircuit: true };
    // `import './rules.js'` from TS source that really is rules.ts
    if (context.parentURL?.endsWith('.ts') && /\.js$/.test(specifier) && (specifier.startsWith('.') || specifier.startsWith('/'))) {
      return next(specifier.replace(/\.js$/, '.ts'), context);
    }
    throw e;
  }
}

export async function load(url: string, context: { format?: string }, next: NextLoad): Promise<{ format: string; source?: string | Buffer; shortCircuit?: boolean }> {
  if (!/\.(m|c)?ts$/.test(url) || url.includes('/node_modules/')) return next(url, context);
  const filename = fileURLToPath(url);
  const source = await readFile(filename, 'utf8');
  const out = await transform(source, {
    filename,
    sourceMaps: 'inline',
    module: { type: 'es6' },
    jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
  });
  return { format: 'module', source: out.code, shortCircuit: true };
}

export const hooksUrl = pathToFileURL(fileURLToPath(import.meta.url)).href;
