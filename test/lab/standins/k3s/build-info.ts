// Constants fixed when the stand-in is bundled (esbuild `define`, see ../build.ts).
declare const __K3S_STANDIN_ARCH__: string;
declare const __K3S_STANDIN_VERSION__: string;
declare const __K3S_STANDIN_COMMIT__: string;
declare const __K3S_STANDIN_CRDS__: Record<string, string>;
declare const __K3S_STANDIN_FAULT__: string;

/** The architecture this "binary" was built for: `amd64`, `arm64` or `arm`. */
export const BUILT_ARCH: string = typeof __K3S_STANDIN_ARCH__ === 'string' ? __K3S_STANDIN_ARCH__ : 'amd64';
/** e.g. `v1.37.1+k3s1`. */
export const K3S_VERSION: string = typeof __K3S_STANDIN_VERSION__ === 'string' ? __K3S_STANDIN_VERSION__ : 'v1.37.1+k3s1';
/** 8 hex digits, derived from the stand-in's own source (so two builds of the same source agree). */
export const K3S_COMMIT: string = typeof __K3S_STANDIN_COMMIT__ === 'string' ? __K3S_STANDIN_COMMIT__ : '00000000';
/** CRD YAML text by file name (HelmChart, HelmChartConfig, Addon, FSM's CRDs). */
export const EMBEDDED_CRDS: Record<string, string> = typeof __K3S_STANDIN_CRDS__ === 'object' ? __K3S_STANDIN_CRDS__ : {};

/**
 * A build-time fault (`buildK3sStandIn(…, {fault})`): `never-ready` is a k3s release that starts and then never
 * becomes ready (no API server, no READY=1) — what an upgrade to a broken release looks like.
 */
export const BUILT_FAULT: string = typeof __K3S_STANDIN_FAULT__ === 'string' ? __K3S_STANDIN_FAULT__ : '';

export const KUBE_VERSION = K3S_VERSION.replace(/\+.*$/, '');
export const GO_VERSION = 'go1.24.6';
/** containerd as it really runs here: Debian's package inside the POP. */
export const PLATFORM = `linux/${BUILT_ARCH}`;

/** The k3s system images of this release (what `k3s-images.txt` lists). */
export const SYSTEM_IMAGES = {
  klipperHelm: 'docker.io/rancher/klipper-helm:v0.13.1-build20260715',
  klipperLb: 'docker.io/rancher/klipper-lb:v0.4.17',
  localPath: 'docker.io/rancher/local-path-provisioner:v0.0.37',
  coredns: 'docker.io/rancher/mirrored-coredns-coredns:1.14.7',
  busybox: 'docker.io/rancher/mirrored-library-busybox:1.37.0',
  traefik: 'docker.io/rancher/mirrored-library-traefik:3.7.13',
  metricsServer: 'docker.io/rancher/mirrored-metrics-server:v0.9.0',
  pause: 'docker.io/rancher/mirrored-pause:3.10.2',
} as const;
