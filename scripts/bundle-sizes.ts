/**
 * `npm run size`: package the service (osls, no AWS account needed) and print each function's
 * artifact — zipped size, unzipped size, and what is in it — so bundle growth shows in review.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { packageService, zipListing } from './packaging.js';

const packaged = packageService('size');
const functions = Object.entries(packaged.template.Resources).filter(([, r]) => r.Type === 'AWS::Lambda::Function');
const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;

console.log('| function | zipped | unzipped | code | source map | files |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
for (const [id] of functions) {
  const name = id.replace(/LambdaFunction$/, '').replace(/^./, (c) => c.toLowerCase());
  const zip = join(packaged.dir, `${name}.zip`);
  const entries = zipListing(zip);
  const total = entries.reduce((sum, e) => sum + e.size, 0);
  const code = entries.filter((e) => e.name.endsWith('.js')).reduce((sum, e) => sum + e.size, 0);
  const map = entries.filter((e) => e.name.endsWith('.map')).reduce((sum, e) => sum + e.size, 0);
  console.log(`| ${name} | ${kib(statSync(zip).size)} | ${kib(total)} | ${kib(code)} | ${kib(map)} | ${entries.length} |`);
}
