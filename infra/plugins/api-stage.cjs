// A local Serverless plugin: the API's stage is a CloudFormation resource of this stack
// (ApiGatewayStage in infra/api.yml, with its access log), not a side effect of osls's deployment.
//
// osls makes the stage implicitly: its AWS::ApiGateway::Deployment (a new logical id,
// ApiGatewayDeployment<random>, on every package) carries StageName, and stage settings (tracing,
// `provider.logs.restApi`) are applied after the deploy by SDK calls, so they are nowhere in the
// template. A Deployment's StageDescription cannot replace that either: CloudFormation refuses it
// once the stage exists ("StageDescription cannot be specified when stage referenced by StageName
// already exists"), i.e. on every deploy but the first. So, as AWS SAM does, the Deployment gets no
// StageName and a Stage resource points at it. The Stage is declared in infra/api.yml; the only thing
// the YAML cannot say is the Deployment's logical id, which this plugin fills in once osls has
// compiled the template and merged `resources:` into it.
'use strict';

const STAGE_ID = 'ApiGatewayStage';
const CLOUDWATCH_ROLE_CONDITION = 'SetsApiGatewayCloudWatchRole';

class ApiStagePlugin {
  constructor(serverless) {
    const fail = (message) => {
      throw new serverless.classes.Error(message);
    };
    this.hooks = {
      'after:aws:package:finalize:mergeCustomProviderResources': () => {
        const template = serverless.service.provider.compiledCloudFormationTemplate;
        wireStage(template, fail);
        checkCloudWatchRoleParam(template, fail);
      },
    };
  }
}

function wireStage(template, fail) {
  const resources = template.Resources;
  const stage = resources[STAGE_ID];
  if (stage?.Type !== 'AWS::ApiGateway::Stage') fail(`api-stage plugin: no ${STAGE_ID} (AWS::ApiGateway::Stage) in the template; infra/api.yml declares it`);
  const deployments = Object.entries(resources).filter(([, r]) => r.Type === 'AWS::ApiGateway::Deployment');
  if (deployments.length !== 1) fail(`api-stage plugin: expected exactly one AWS::ApiGateway::Deployment from osls, found ${deployments.length}`);
  const [deploymentId, deployment] = deployments[0];
  // osls names the stage it would have made after the stage; the Stage resource must make that one,
  // or the alarms, the dashboard and the ServiceEndpoint output (all `${sls:stage}`) would name another.
  if (deployment.Properties.StageName !== stage.Properties.StageName) {
    fail(`api-stage plugin: osls deploys to stage "${deployment.Properties.StageName}" but ${STAGE_ID} is "${stage.Properties.StageName}"`);
  }
  delete deployment.Properties.StageName;
  stage.Properties.DeploymentId = { Ref: deploymentId };
}

// The apiGatewayCloudWatchRole stage parameter reaches the template only inside a Condition
// (infra/api.yml); anything but true or false would silently mean false there, so it fails here.
function checkCloudWatchRoleParam(template, fail) {
  const condition = template.Conditions?.[CLOUDWATCH_ROLE_CONDITION];
  const joined = condition?.['Fn::Equals']?.[0]?.['Fn::Join']?.[1];
  if (!Array.isArray(joined) || joined.length !== 1) fail(`api-stage plugin: condition ${CLOUDWATCH_ROLE_CONDITION} is not the shape infra/api.yml gives it`);
  const value = String(joined[0]);
  if (value !== 'true' && value !== 'false') fail(`param apiGatewayCloudWatchRole: "${value}" is not true or false`);
  joined[0] = value;
}

module.exports = ApiStagePlugin;
