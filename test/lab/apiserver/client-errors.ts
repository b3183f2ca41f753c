// Test helper: the Status a failed @kubernetes/client-node call carried (code + parsed body).
export interface ApiFailure {
  code: number;
  body: { reason?: string; message?: string; details?: { causes?: Array<{ field?: string; reason?: string; message?: string }> } };
}

export async function apiFailure(p: Promise<unknown>): Promise<ApiFailure> {
  try {
    await p;
  } catch (e) {
    const err = e as { code?: number; body?: unknown };
    if (typeof err.code !== 'number') throw e;
    return { code: err.code, body: typeof err.body === 'string' ? JSON.parse(err.body) : (err.body as ApiFailure['body']) };
  }
  throw new Error('expected the request to fail, it succeeded');
}
