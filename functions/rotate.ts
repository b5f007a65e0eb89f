/**
 * Lambda entry point `rotate`: the Secrets Manager rotation function for the Auth0 clients'
 * credentials (the `AWS::SecretsManager::RotationSchedule` per rotating client that
 * infra/deployment.cjs adds to the template; the function's role is RotateRole in infra/iam.yml).
 */
import { createRotateFunction } from './composition/rotate.js';
import { loadConfig } from './config.js';

export const handler = createRotateFunction(loadConfig()).handler;
