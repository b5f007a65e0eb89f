/**
 * Who is asking. API Gateway's AWS_IAM authorization hands the function the caller's ARN
 * (`requestContext.identity.userArn`); a direct Lambda invocation carries no identity at all and
 * is authorized by IAM's `lambda:InvokeFunction` alone.
 */

/** An IAM principal, as grants match it. */
export interface IamCaller {
  readonly kind: 'iam';
  readonly partition: string;
  readonly account: string;
  readonly type: 'role' | 'user';
  /** user path (`''` at the root). Always `''` for roles: STS session ARNs drop it. */
  readonly path: string;
  readonly name: string;
  /** the principal's ARN, for logs: `arn:aws:iam::ACCOUNT:role/NAME` for an assumed role */
  readonly arn: string;
}

/** A direct `lambda:Invoke` (scheduled jobs): allowed only by grants that say `directInvoke`. */
export interface DirectCaller {
  readonly kind: 'direct';
}

export type Caller = IamCaller | DirectCaller;

const ASSUMED_ROLE = /^arn:(aws|aws-cn|aws-us-gov):sts::(\d{12}):assumed-role\/([\w+=,.@-]{1,64})\/([\w+=,.@-]{2,64})$/;
const IAM_USER = /^arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):user\/((?:[\w+=,.@-]+\/)*)([\w+=,.@-]{1,64})$/;

/**
 * Map a caller ARN to the principal grants are written against: an assumed-role session
 * `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION` is the role `arn:aws:iam::ACCOUNT:role/ROLE`;
 * an IAM user is itself. Anything else (root, federated users, garbage) is `undefined`, and is
 * denied.
 */
export function callerFromArn(arn: string | null | undefined): IamCaller | undefined {
  if (typeof arn !== 'string') return undefined;
  const role = ASSUMED_ROLE.exec(arn);
  if (role !== null) {
    const [, partition = '', account = '', name = ''] = role;
    return { kind: 'iam', partition, account, type: 'role', path: '', name, arn: `arn:${partition}:iam::${account}:role/${name}` };
  }
  const user = IAM_USER.exec(arn);
  if (user !== null) {
    const [, partition = '', account = '', pathWithSlash = '', name = ''] = user;
    return { kind: 'iam', partition, account, type: 'user', path: pathWithSlash.replace(/\/$/, ''), name, arn };
  }
  return undefined;
}
