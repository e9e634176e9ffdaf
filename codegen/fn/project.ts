/**
 * The ts-morph project function programs are read with, and how a name in
 * the user's file is traced back to the tsbpf API it stands for.
 *
 * One project is kept per process: later builds reuse the parsed standard
 * library and tsbpf's own declarations, which is most of the cost.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Node, Project, ts, type SourceFile, type Symbol as TsSymbol } from 'ts-morph';

/**
 * 'tsbpf', 'tsbpf/fn' and 'tsbpf/cni' resolved to this copy's declarations, so
 * a user's file type-checks wherever it lives (a lone file has no
 * node_modules/tsbpf; the loader resolves the same names the same way).
 */
function tsbpfPaths(): Record<string, string[]> {
  const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const entries: Array<[string, string]> = [
    ['tsbpf', 'index.d.ts'],
    ['tsbpf/fn', 'sdk/fn/index.d.ts'],
    ['tsbpf/cni', 'cni/index.d.ts'],
  ];
  const paths: Record<string, string[]> = {};
  for (const [name, file] of entries) if (existsSync(path.join(dist, file))) paths[name] = [path.join(dist, file)];
  return paths;
}

let shared: Project | undefined;

export function fnProject(): Project {
  if (shared) return shared;
  shared = new Project({
    skipAddingFilesFromTsConfig: true,
    skipFileDependencyResolution: false,
    compilerOptions: {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      lib: ['lib.es2022.d.ts'],
      // Programs use no Node APIs; leaving @types/node out makes the first build several times faster.
      types: [],
      // Narrowing (a header is undefined until checked) needs strict null checks.
      strict: true,
      skipLibCheck: true,
      noEmit: true,
      allowJs: false,
      paths: tsbpfPaths(),
    },
  });
  return shared;
}

/** The user's file, fresh from disk (or from `text` when given). */
export function userSourceFile(project: Project, file: string, text?: string): SourceFile {
  if (text !== undefined) return project.createSourceFile(file, text, { overwrite: true });
  const have = project.getSourceFile(file);
  if (have) {
    have.refreshFromFileSystemSync();
    return have;
  }
  return project.addSourceFileAtPath(file);
}

/** tsbpf's modules a program's file can name: function programs, layouts, the filter DSL. */
export type TsbpfModule = 'fn' | 'layout' | 'dsl';

/** Which tsbpf module a declaration lives in, by its file path. */
export function tsbpfModuleOf(node: Node): TsbpfModule | undefined {
  const p = node.getSourceFile().getFilePath();
  if (/\/sdk\/fn\/[^/]+\.(d\.ts|ts)$/.test(p)) return 'fn';
  if (/\/sdk\/dsl\/[^/]+\.(d\.ts|ts)$/.test(p)) return 'dsl';
  if (/\/sdk\/layout\.(d\.ts|ts)$/.test(p)) return 'layout';
  return undefined;
}

/** The symbol a name refers to, through imports and re-exports. */
export function resolvedSymbol(node: Node): TsSymbol | undefined {
  const parent = node.getParent();
  // In { hi, lo } the name's own symbol is the property; the value is the variable.
  let s = parent && Node.isShorthandPropertyAssignment(parent) && parent.getNameNode() === node ? parent.getValueSymbol() : node.getSymbol();
  if (!s) return undefined;
  for (let i = 0; i < 16 && s.isAlias(); i++) {
    const t = s.getAliasedSymbol();
    if (!t || t === s) break;
    s = t;
  }
  return s;
}

/** The declaration a name refers to (the first, for merged declarations). */
export function declarationOf(node: Node): Node | undefined {
  const s = resolvedSymbol(node);
  return s?.getDeclarations()[0] ?? s?.getValueDeclaration();
}

/**
 * When `node` (an identifier or a property access) names an export of tsbpf's
 * function API or layouts, its module and name: { module: 'fn', name: 'xdp' }.
 */
export function tsbpfName(node: Node): { module: TsbpfModule; name: string } | undefined {
  const s = resolvedSymbol(node);
  if (!s) return undefined;
  for (const d of s.getDeclarations()) {
    const m = tsbpfModuleOf(d);
    if (!m) continue;
    // Only top-level declarations are API names (not members of interfaces).
    const parent = Node.isVariableDeclaration(d) ? d.getVariableStatement()?.getParent() : d.getParent();
    if (parent && !Node.isSourceFile(parent)) continue;
    return { module: m, name: s.getName() };
  }
  return undefined;
}
