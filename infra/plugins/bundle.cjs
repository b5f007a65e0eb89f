// A local Serverless plugin: `osls package`, `deploy` and `invoke local` run the project's build
// first (grants validation + one esbuild bundle per function), so the artifacts can never be stale
// or missing on a clean clone.
'use strict';

const { execFileSync } = require('node:child_process');
const path = require('node:path');

class BundlePlugin {
  constructor(serverless) {
    const build = () => {
      const grants = serverless.service.custom?.grantsFile;
      execFileSync(process.execPath, [path.join(serverless.serviceDir, 'scripts/build.mjs'), ...(grants ? ['--grants', grants] : [])], {
        cwd: serverless.serviceDir,
        stdio: 'inherit',
      });
    };
    this.hooks = {
      'before:package:createDeploymentArtifacts': build,
      'before:deploy:function:packageFunction': build,
      'before:invoke:local:invoke': build,
    };
  }
}

module.exports = BundlePlugin;
