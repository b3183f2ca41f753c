export interface KubeconfigTarget { server: string; ca?: string; cert?: string; key?: string; token?: string; insecure?: boolean }
export function loadKubeconfig(_text: string, _context?: string): KubeconfigTarget { throw new Error('not implemented yet'); }
export class KubeClient { constructor(readonly target: KubeconfigTarget) {} }
