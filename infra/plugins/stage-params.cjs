// A local Serverless plugin: the one check of the stage parameters that needs AWS, at deploy time.
//
// infra/deployment.cjs checks every stage parameter, and each grant's principals against the API's
// resource policy, when the template is built (offline: `osls package` runs without credentials).
// With allowedAccountIds empty the policy lets in the deploying account only, which packaging
// cannot know; it checks that the grants name one account and hands that list here. `osls deploy`
// then knows the account (STS GetCallerIdentity, as osls's provider.getAccountId asks it): a grant
// in another account is refused before CloudFormation is called, naming the grant.
'use strict';

/**
 * The grants (`[{ field, account }]`, from infra/deployment.cjs) whose account is not the
 * deploying one: one message each.
 */
function foreignGrantAccounts(deployingAccountMustBe, deployingAccount) {
  return (deployingAccountMustBe ?? [])
    .filter(({ account }) => account !== deployingAccount)
    .map(({ field, account }) => `${field}: account ${account} is not allowed to call the API (allowedAccountIds is empty: only the deploying account ${deployingAccount} may); list the accounts in allowedAccountIds`);
}

class StageParamsPlugin {
  constructor(serverless) {
    this.hooks = {
      // After osls has packaged (its own before:deploy:deploy hook runs first), before any change.
      'before:deploy:deploy': async () => {
        const mustBe = serverless.service.custom?.deployment?.deployingAccountMustBe ?? [];
        if (mustBe.length === 0) return;
        const account = await serverless.getProvider('aws').getAccountId();
        const problems = foreignGrantAccounts(mustBe, String(account));
        if (problems.length > 0) throw new serverless.classes.Error(`grants file rejected:\n  ${problems.join('\n  ')}`);
      },
    };
  }
}

module.exports = StageParamsPlugin;
module.exports.foreignGrantAccounts = foreignGrantAccounts;
