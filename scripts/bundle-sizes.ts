/**
 * `npm run size`: package the service (osls, no AWS account needed) and print each function's
 * artifact — zipped size, unzipped size, and what is in it — so bundle growth shows in review.
 * The package is made in a temp directory of this script's, removed afterwards whether packaging
 * and reading it worked or not.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runPackage, zipListing, type CfnTemplate } from './packaging.js';

const dir = mkdtempSync(join(tmpdir(), 'package-size-'));
try {
  console.error('packaging the service (osls package --stage size)…');
  const packaged = runPackage('size', dir);
  if (packaged.status !== 0) {
    console.error(`osls package failed (${packaged.status}):\n${packaged.output}`);
    process.exitCode = 1;
  } else {
    const template = JSON.parse(readFileSync(join(dir, 'cloudformation-template-update-stack.json'), 'utf8')) as CfnTemplate;
    const functions = Object.entries(template.Resources).filter(([, r]) => r.Type === 'AWS::Lambda::Function');
    const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;

    console.log('| function | zipped | unzipped | code | source map | files |');
    console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
    for (const [id] of functions) {
      const name = id.replace(/LambdaFunction$/, '').replace(/^./, (c) => c.toLowerCase());
      const zip = join(dir, `${name}.zip`);
      const entries = zipListing(zip);
      const total = entries.reduce((sum, e) => sum + e.size, 0);
      const code = entries.filter((e) => e.name.endsWith('.js')).reduce((sum, e) => sum + e.size, 0);
      const map = entries.filter((e) => e.name.endsWith('.map')).reduce((sum, e) => sum + e.size, 0);
      console.log(`| ${name} | ${kib(statSync(zip).size)} | ${kib(total)} | ${kib(code)} | ${kib(map)} | ${entries.length} |`);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
