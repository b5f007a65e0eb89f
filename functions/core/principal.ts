/**
 * Who is asking: always a principal STS proved (docs/identity-proof.md), never a field of the event.
 * A direct Lambda invocation carries no identity and an API-shaped event can be written by any
 * invoker, so `requestContext.identity.userArn` is at most checked against the proof.
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
  /**
   * The role's or user's unique id (`AROA…` / `AIDA…`), as STS returns it in `UserId` (before the
   * `:` of a role session). Unset only for identities no STS call proved (unit tests).
   */
  readonly uniqueId?: string | undefined;
}

/** How the request arrived: through the API, or by a direct `lambda:Invoke` (scheduled jobs). */
export type Channel = 'api' | 'direct';

/** A proven principal, and the way it came. */
export interface Caller extends IamCaller {
  readonly channel: Channel;
}

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
