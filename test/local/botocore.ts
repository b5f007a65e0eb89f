/**
 * Presign with botocore (python3), as a Python service would: `SigV4QueryAuth` on an `AWSRequest`,
 * the clock pinned so the result is comparable. An independent SigV4 implementation to check ours
 * against; a machine without python3 and botocore fails the tests that use it, never skips them.
 */
import { spawnSync } from 'node:child_process';

const SCRIPT = `
import datetime, json, sys
import botocore.auth as auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
i = json.load(sys.stdin)
fixed = datetime.datetime.strptime(i['amzDate'], '%Y%m%dT%H%M%SZ')
auth.get_current_datetime = lambda *args, **kwargs: fixed
creds = Credentials(i['accessKeyId'], i['secretAccessKey'], i.get('sessionToken'))
req = AWSRequest(method='GET', url=i['url'], headers=i['headers'])
auth.SigV4QueryAuth(creds, i['service'], i['region'], expires=i['expires']).add_auth(req)
sys.stdout.write(req.url)
`;

export interface BotocorePresignInput {
  /** the URL with its operation parameters, e.g. http://127.0.0.1:1234/?Action=GetCallerIdentity&Version=2011-06-15 */
  url: string;
  /** headers to sign (sent by whoever uses the URL), besides host */
  headers: Record<string, string>;
  credential: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  region: string;
  service: string;
  expires: number;
  /** yyyymmddThhmmssZ */
  amzDate: string;
}

/** The presigned URL botocore makes. */
export function botocorePresign(input: BotocorePresignInput): string {
  const result = spawnSync('python3', ['-c', SCRIPT], {
    input: JSON.stringify({
      url: input.url,
      headers: input.headers,
      accessKeyId: input.credential.accessKeyId,
      secretAccessKey: input.credential.secretAccessKey,
      ...(input.credential.sessionToken === undefined ? {} : { sessionToken: input.credential.sessionToken }),
      region: input.region,
      service: input.service,
      expires: input.expires,
      amzDate: input.amzDate,
    }),
    encoding: 'utf8',
  });
  if (result.status !== 0) throw new Error(`python3 botocore presign failed (status ${String(result.status)}): ${result.stderr || String(result.error)}`);
  return result.stdout;
}
