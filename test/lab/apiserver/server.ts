import type { ApiServer, ApiServerOptions } from './types.js';
export async function createApiServer(_opts: ApiServerOptions): Promise<ApiServer> {
  throw new Error('lab apiserver: not implemented yet');
}
