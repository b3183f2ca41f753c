// LAB STAND-IN: the federation hub — the lab API server in netns `lab-hub` on 10.99.0.1, with FSM's
// multicluster Cluster controller, reachable from the host through a loopback forwarder.
export interface HubOptions {
  /** Port on 10.99.0.1 inside lab-hub and on the loopback forwarder. Default 6443. */
  port?: number;
  /** Host-namespace address of the forwarder. Default 127.0.0.2. */
  forwardHost?: string;
  /** State dir (pid files, certs, kubeconfig, data). Default /run/fsm-edge-lab/hub. */
  stateDir?: string;
  /** Seconds between Cluster reconciles. Default 5. */
  resyncSeconds?: number;
}
export interface Hub {
  /** Host-side URL (through the forwarder), e.g. https://127.0.0.2:6443. */
  url: string;
  /** URL as POPs see it: https://10.99.0.1:6443. */
  labUrl: string;
  /** Admin kubeconfig (client cert, O=system:masters) for the controller, server = `url`. */
  kubeconfigPath: string;
  caFile: string;
  stop(): Promise<void>;
}
export async function startHub(_opts: HubOptions = {}): Promise<Hub> { throw new Error('not implemented yet'); }
export async function stopHub(_stateDir?: string): Promise<void> { throw new Error('not implemented yet'); }
