// Kubernetes `Status` errors, shaped like kube-apiserver's so clients (and installers) see real responses.

export interface StatusCause {
  reason: string;
  message: string;
  field?: string;
}

export interface StatusObject {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message: string;
  reason: string;
  details?: { name?: string; group?: string; kind?: string; uid?: string; causes?: StatusCause[]; retryAfterSeconds?: number };
  code: number;
}

export class ApiError extends Error {
  readonly status: StatusObject;
  constructor(code: number, reason: string, message: string, details?: StatusObject['details']) {
    super(message);
    this.name = 'ApiError';
    this.status = {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message,
      reason,
      code,
      ...(details ? { details } : {}),
    };
  }
  get code(): number {
    return this.status.code;
  }
}

/** `clusters.multicluster.flomesh.io`, `secrets` — the qualified resource name kube-apiserver prints. */
export function qualified(plural: string, group: string): string {
  return group ? `${plural}.${group}` : plural;
}

export function notFound(plural: string, group: string, name: string): ApiError {
  return new ApiError(404, 'NotFound', `${qualified(plural, group)} "${name}" not found`, { name, group, kind: plural });
}

export function alreadyExists(plural: string, group: string, name: string): ApiError {
  return new ApiError(409, 'AlreadyExists', `${qualified(plural, group)} "${name}" already exists`, { name, group, kind: plural });
}

export function conflict(
  plural: string,
  group: string,
  name: string,
  why = 'the object has been modified; please apply your changes to the latest version and try again',
): ApiError {
  return new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${qualified(plural, group)} "${name}": ${why}`, {
    name,
    group,
    kind: plural,
  });
}

export function invalid(kind: string, group: string, name: string, causes: StatusCause[]): ApiError {
  const list = causes.map((c) => (c.field ? `${c.field}: ${c.message}` : c.message));
  const gk = group ? `${kind}.${group}` : kind;
  const msg = `${gk} "${name}" is invalid: ${list.length === 1 ? list[0] : `[${list.join(', ')}]`}`;
  return new ApiError(422, 'Invalid', msg, { name, group, kind, causes });
}

export function badRequest(message: string): ApiError {
  return new ApiError(400, 'BadRequest', message);
}

export function forbidden(message: string, details?: StatusObject['details']): ApiError {
  return new ApiError(403, 'Forbidden', message, details);
}

export function unauthorized(): ApiError {
  return new ApiError(401, 'Unauthorized', 'Unauthorized');
}

export function methodNotAllowed(): ApiError {
  return new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
}

export function unsupportedMediaType(contentType: string, accepted: string[]): ApiError {
  return new ApiError(
    415,
    'UnsupportedMediaType',
    `the body of the request was in an unknown format - accepted media types include: ${accepted.join(', ')}`,
    {
      causes: [{ reason: 'UnexpectedServerResponse', message: `unsupported media type "${contentType}"` }],
    },
  );
}
