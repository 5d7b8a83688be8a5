// npm test: type-check, check that every public symbol has a doc comment (typedoc with
// validation.notDocumented as an error, no output written), run the tests in Node, then the
// same tests in headless Chromium when one is installed (Debian's chromium at
// /usr/bin/chromium, or CHROMIUM_PATH). Without a Chromium it says so and passes; with
// REQUIRE_BROWSER_TESTS=1 (CI) it fails instead.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

function run(command) {
  console.log(`\n> ${command}`);
  const { status } = spawnSync(command, { stdio: "inherit", shell: true });
  if (status !== 0) process.exit(status ?? 1);
}

run("tsc -p tsconfig.check.json");
run("typedoc --emit none");
run("vitest run --project node");
const chromium = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
if (existsSync(chromium)) {
  run("vitest run --project browser");
  run("vitest run --project chromium");
} else if (process.env.REQUIRE_BROWSER_TESTS) {
  console.error(`\nREQUIRE_BROWSER_TESTS is set but there is no Chromium at ${chromium}.`);
  process.exit(1);
} else {
  console.log(
    `\nThe browser tests did NOT run: no Chromium at ${chromium}. Install Debian's chromium ` +
      "(apt-get install chromium) or set CHROMIUM_PATH, then run `npm run test:browser`.",
  );
}
