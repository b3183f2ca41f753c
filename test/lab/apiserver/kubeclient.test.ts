// The hub's kubeconfig reader: every unusable kubeconfig is refused with a reason a person can act on.
import { describe, expect, it } from 'vitest';
import { KubeconfigError, loadKubeconfig } from './kubeclient.js';

const good = (user: string) => `apiVersion: v1
kind: Config
clusters:
- name: pop
  cluster: {server: "https://10.99.0.11:6443/", certificate-authority-data: ${Buffer.from('CA PEM').toString('base64')}}
users:
- name: hub
  user: ${user}
contexts:
- name: pop
  context: {cluster: pop, user: hub}
current-context: pop
`;

describe('loadKubeconfig', () => {
  it('reads server, CA and a token or a client certificate', () => {
    expect(loadKubeconfig(good('{token: abc}'))).toEqual({ server: 'https://10.99.0.11:6443', ca: 'CA PEM', token: 'abc' });
    const cert = loadKubeconfig(
      good(`{client-certificate-data: ${Buffer.from('C').toString('base64')}, client-key-data: ${Buffer.from('K').toString('base64')}}`),
    );
    expect([cert.cert, cert.key]).toEqual(['C', 'K']);
  });

  it.each([
    ['not: [yaml', 'kubeconfig is not valid YAML'],
    ['apiVersion: v1\nkind: Config\n', 'kubeconfig has no current-context'],
    [good('{token: abc}').replace('current-context: pop', 'current-context: other'), 'kubeconfig has no context "other"'],
    [
      good('{token: abc}').replace('context: {cluster: pop,', 'context: {cluster: gone,'),
      'kubeconfig context "pop" names cluster "gone", which is not defined',
    ],
    [
      good('{token: abc}').replace('"https://10.99.0.11:6443/"', '"10.99.0.11:6443"'),
      'kubeconfig cluster "pop" has no valid server URL (got "10.99.0.11:6443")',
    ],
    [good('{}'), 'kubeconfig user "hub" has no token or client certificate'],
  ])('refuses %j', (text, message) => {
    expect(() => loadKubeconfig(text)).toThrow(KubeconfigError);
    expect(() => loadKubeconfig(text)).toThrow(message);
  });
});
