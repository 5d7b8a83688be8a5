// The TypeScript code blocks of a markdown file, for the tests that compile and run them.

export interface Block {
  /** "README.md:47": the file and the line of the opening fence. */
  where: string;
  file: string;
  line: number;
  code: string;
}

/** The ```ts blocks of a markdown text. */
export function tsBlocks(markdown: string, file: string): Block[] {
  const blocks: Block[] = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*(ts|typescript)\s*$/.exec(lines[i]);
    if (!open) continue;
    const fence = open[2];
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !lines[i].trimStart().startsWith(fence); i++) body.push(lines[i]);
    blocks.push({ where: `${file}:${start + 1}`, file, line: start + 1, code: body.join("\n") });
  }
  return blocks;
}
