// LAB STAND-IN: a client-go shared informer (reflector + store), as FSM's hub runs one per resource against a
// member cluster: list, then watch from the list's resourceVersion, re-list on a closed or expired watch.
// A failed list (403, 404, unreachable) is logged like client-go's reflector ("Failed to watch … failed to list
// …") and retried with backoff (k8s.io/client-go tools/cache/reflector.go: 800 ms doubling to 30 s); the
// informer stays unsynced meanwhile — `waitForCacheSync` (tools/cache/shared_informer.go WaitForCacheSync,
// polling every 100 ms) waits for it without a deadline, as FSM's InformerCollection.run does.
import type { KubeClient } from '../kubeclient.js';
import type { KubeObject } from '../types.js';

export interface InformerEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: KubeObject;
  old?: KubeObject;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const keyOf = (o: KubeObject) => (o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : (o.metadata.name as string));

export class Informer {
  readonly items = new Map<string, KubeObject>();
  synced = false;
  /** The last list/watch failure, as client-go logs it. */
  lastError: string | undefined;
  private readonly handlers: Array<(ev: InformerEvent) => void> = [];
  private stopped = false;
  private watch: { stop(): void } | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly client: KubeClient,
    /** Collection path, e.g. /apis/config.flomesh.io/v1alpha3/namespaces/fsm-system/meshconfigs */
    private readonly path: string,
    /** Type name for logs, e.g. *v1alpha3.MeshConfig */
    readonly typeName: string,
    private readonly log: (line: string) => void,
    private readonly query: Record<string, string> = {},
  ) {}

  /** Like SharedIndexInformer.AddEventHandler: the objects already known are delivered as ADDED first. */
  addEventHandler(h: (ev: InformerEvent) => void): void {
    this.handlers.push(h);
    for (const o of this.items.values()) h({ type: 'ADDED', object: o });
  }

  get(key: string): KubeObject | undefined {
    return this.items.get(key);
  }

  private emit(ev: InformerEvent): void {
    for (const h of this.handlers) {
      try {
        h(ev);
      } catch (e) {
        this.log(`informer ${this.typeName}: handler failed: ${(e as Error).message}`);
      }
    }
  }

  private url(extra: Record<string, string>): string {
    const q = new URLSearchParams({ ...this.query, ...extra }).toString();
    return q ? `${this.path}?${q}` : this.path;
  }

  async run(): Promise<void> {
    let backoff = 800;
    while (!this.stopped) {
      try {
        const list = await this.client.get<{ metadata?: { resourceVersion?: string }; items?: KubeObject[] }>(
          this.url({ resourceVersion: '0' }),
        );
        const fresh = new Map((list.items ?? []).map((o) => [keyOf(o), o] as const));
        for (const [k, old] of this.items) if (!fresh.has(k)) this.items.delete(k), this.emit({ type: 'DELETED', object: old });
        for (const [k, o] of fresh) {
          const old = this.items.get(k);
          this.items.set(k, o);
          if (!old) this.emit({ type: 'ADDED', object: o });
          else if (old.metadata.resourceVersion !== o.metadata.resourceVersion) this.emit({ type: 'MODIFIED', object: o, old });
        }
        this.synced = true;
        this.lastError = undefined;
        backoff = 800;
        let rv = list.metadata?.resourceVersion ?? '';
        let expired = false;
        while (!this.stopped && !expired) {
          const w = this.client.watch(
            this.url({ watch: '1', resourceVersion: rv, allowWatchBookmarks: 'true', timeoutSeconds: '300' }),
            (ev) => {
              if (ev.type === 'ERROR') {
                expired = true; // 410 Gone: re-list
                return;
              }
              const o = ev.object as unknown as KubeObject;
              rv = (o.metadata?.resourceVersion as string | undefined) ?? rv;
              if (ev.type === 'BOOKMARK') return;
              const k = keyOf(o);
              const old = this.items.get(k);
              if (ev.type === 'DELETED') {
                this.items.delete(k);
                this.emit({ type: 'DELETED', object: o });
              } else {
                this.items.set(k, o);
                this.emit(old ? { type: 'MODIFIED', object: o, old } : { type: 'ADDED', object: o });
              }
            },
          );
          this.watch = w;
          await w.done;
        }
      } catch (e) {
        if (this.stopped) break;
        const msg = (e as Error).message;
        this.lastError = `failed to list ${this.typeName}: ${msg}`;
        this.log(`reflector: "Failed to watch" err="${this.lastError}"`);
        await new Promise<void>((r) => {
          this.wake = r;
          void sleep(backoff * (1 + Math.random())).then(() => r());
        });
        backoff = Math.min(backoff * 2, 30_000);
      }
    }
  }

  stop(): void {
    this.stopped = true;
    this.watch?.stop();
    this.wake?.();
  }
}

/** cache.WaitForCacheSync: true once every informer has synced, false if `stopped()` turns true first. */
export async function waitForCacheSync(informers: Informer[], stopped: () => boolean): Promise<boolean> {
  for (;;) {
    if (stopped()) return false;
    if (informers.every((i) => i.synced)) return true;
    await sleep(100);
  }
}
