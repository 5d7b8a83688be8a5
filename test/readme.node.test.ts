// Every ```ts block of README.md and docs/*.md type-checks under --strict, as a user's module
// that imports "batchnorm-wasm" (mapped to src/ by `paths`). A block may use variables it does
// not define (x, gamma, dout, …): each such free name gets a declaration from FREE below, and
// a name of the package's exports an import. A free name FREE does not know fails the test,
// so that its type is stated here rather than guessed.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import ts from "typescript";
import { afterAll, describe, expect, test } from "vitest";
import { tsBlocks, type Block } from "./support/markdown.js";

const root = resolve(import.meta.dirname, "..");

/** The types of the free variables the examples use; `pkg.` is the package (import type * as pkg). */
const FREE: Record<string, string> = {
  // Data, (N, D) or (N, C, H, W), and the upstream gradient.
  x: "Float32Array", xTest: "Float32Array", gamma: "Float32Array", beta: "Float32Array", dout: "Float32Array",
  N: "number", D: "number", C: "number", H: "number", W: "number",
  shape: "number[]",
  bnParam: "pkg.BNParam<Float32Array>",
  bn: "pkg.BatchNorm", bn16: "pkg.BatchNorm",
  batches: "Float32Array[]",
  computeUpstreamGradient: "(out: Float32Array, dout: Float32Array) => void",
  // Weights of the layer before a batch norm (docs/folding.md).
  convWeight: "Float32Array", convBias: "Float32Array", fcWeight: "Float64Array", fcBias: "Float64Array",
  upWeight: "Float32Array", kernel: "Float32Array", weight: "Float32Array", bias: "Float32Array",
  out: "number", inp: "number",
  bnState: "pkg.PyTorchState",
  kGamma: "number[]", kBeta: "number[]", moving_mean: "number[]", moving_variance: "number[]",
  // A batch and its upstream gradient (docs/normalizations.md, workspaces).
  batch: "Float32Array", upstream: "Float32Array",
};

const options: ts.CompilerOptions = {
  strict: true,
  noEmit: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  lib: ["lib.es2024.d.ts", "lib.dom.d.ts"],
  types: [],
  skipLibCheck: true,
  baseUrl: root,
  paths: { "batchnorm-wasm": ["src/index.ts"], "batchnorm-wasm/tfjs": ["src/tfjs.ts"] },
};

/** Names a file uses without declaring them ("Cannot find name", "No value exists in scope for the shorthand property"). */
const UNDECLARED = new Set([2304, 2552, 18004]);

function format(d: ts.Diagnostic): string {
  return ts.flattenDiagnosticMessageText(d.messageText, "\n");
}

/**
 * Type-checks the blocks, each as its own module: one line of preamble (imports and
 * declarations of its free names), then the block as written. Returns the errors, each as
 * "README.md:53: message" at the block's line in the markdown.
 */
export function checkBlocks(blocks: Block[], dir: string): string[] {
  const files = blocks.map((_, i) => join(dir, `block${i}.ts`));
  // Each a module (a block without imports would otherwise see the others' globals).
  blocks.forEach((b, i) => writeFileSync(files[i], `${b.code}\nexport {};`));
  const index = join(root, "src/index.ts");
  const first = ts.createProgram([index, ...files], options);
  const checker = first.getTypeChecker();
  const indexSymbol = checker.getSymbolAtLocation(first.getSourceFile(index)!);
  if (!indexSymbol) throw new Error("src/index.ts has no module symbol");
  const exported = new Set(checker.getExportsOfModule(indexSymbol).map((s) => s.name));
  const errors: string[] = [];
  blocks.forEach((b, i) => {
    const free = new Set<string>();
    for (const d of first.getSemanticDiagnostics(first.getSourceFile(files[i]))) {
      if (!UNDECLARED.has(d.code) || d.start === undefined) continue;
      free.add(b.code.slice(d.start, d.start + (d.length ?? 0)));
    }
    const imports = [...free].filter((name) => exported.has(name) && !(name in FREE));
    const unknown = [...free].filter((name) => !exported.has(name) && !(name in FREE));
    for (const name of unknown) errors.push(`${b.where}: uses ${name}, which it does not define: give its type in FREE (test/readme.node.test.ts)`);
    const declared = [...free].filter((name) => name in FREE).map((name) => `declare const ${name}: ${FREE[name]};`);
    const preamble = [
      `import type * as pkg from "batchnorm-wasm";`,
      imports.length ? `import { ${imports.join(", ")} } from "batchnorm-wasm";` : "",
      ...declared,
      "export {};",
    ].join(" ");
    writeFileSync(files[i], `${preamble}\n${b.code}`);
  });
  const second = ts.createProgram([index, ...files], options, undefined, first);
  blocks.forEach((b, i) => {
    const source = second.getSourceFile(files[i])!;
    for (const d of [...second.getSyntacticDiagnostics(source), ...second.getSemanticDiagnostics(source)]) {
      const line = d.start === undefined ? 0 : source.getLineAndCharacterOfPosition(d.start).line;
      errors.push(`${b.file}:${b.line + line}: ${format(d)}`);
    }
  });
  for (const d of second.getGlobalDiagnostics()) errors.push(`(global): ${format(d)}`);
  return errors;
}

const markdownFiles = ["README.md", ...readdirSync(join(root, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];
const dir = mkdtempSync(join(tmpdir(), "bn-readme-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the ```ts blocks of the README and docs/*.md", () => {
  const blocks = markdownFiles.flatMap((f) => tsBlocks(readFileSync(join(root, f), "utf8"), f));

  test("there are blocks to check, the README's first example among them", () => {
    expect(blocks.length).toBeGreaterThan(5);
    expect(blocks[0].code).toMatch(/from "batchnorm-wasm"/);
  });

  test("each compiles under tsc --strict", () => {
    const at = join(dir, "docs");
    mkdirSync(at);
    expect(checkBlocks(blocks, at)).toEqual([]);
  }, 120_000);

  test("a block that does not compile fails, at its line in the markdown", () => {
    const bad = tsBlocks(
      [
        "# t", "", "```ts",
        'import { batchnormForward } from "batchnorm-wasm";',
        'const bnParam = { mode: "train" };',
        "const { out } = batchnormForward(x, gamma, beta, bnParam);",
        "const n: string = out.length;",
        "undefinedThing(out);",
        "```",
      ].join("\n"),
      "bad.md",
    );
    const at = join(dir, "bad");
    mkdirSync(at);
    const errors = checkBlocks(bad, at);
    expect(errors).toContainEqual(expect.stringMatching(/^bad\.md:7: Type 'number' is not assignable to type 'string'/));
    expect(errors).toContainEqual(expect.stringMatching(/^bad\.md:3: uses undefinedThing, which it does not define/));
  }, 120_000);
});
