/**
 * Lambda entry point `rotate`: the Secrets Manager rotation function for the Auth0 clients'
 * credentials (AWS::SecretsManager::RotationSchedule in infra/rotation.yml).
 */
import { loadConfig } from './config.js';
import { createVendor } from './vendor.js';

const vendor = createVendor(loadConfig());

export const handler = vendor.rotationHandler;
