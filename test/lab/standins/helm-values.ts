// LAB STAND-IN support (never imported by src/): Helm's value coalescing, shared by the FSM chart stand-in and
// the k3s stand-in's Helm controller. No imports: it is bundled into the k3s stand-in that runs on Node 18.

export type Values = Record<string, unknown>;

/** Helm's coalescing: maps merge key by key, everything else is replaced; `null` deletes a key. */
export function deepMerge(base: Values, over: Values): Values {
  const out: Values = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    if (v === null) delete out[k];
    else if (v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b)) {
      out[k] = deepMerge(b as Values, v as Values);
    } else out[k] = v;
  }
  return out;
}

/** `--set a.b=c,d[0]=e` semantics for HelmChart `spec.set` (keys are dotted paths; values are taken as given). */
export function applySet(values: Values, set: Record<string, unknown>): Values {
  const out = structuredClone(values);
  for (const [key, raw] of Object.entries(set)) {
    const parts = key.split(/(?<!\\)\./).map((p) => p.replace(/\\\./g, '.'));
    let cur: Values = out;
    parts.forEach((p, i) => {
      if (i === parts.length - 1) cur[p] = typeof raw === 'string' && /^(true|false)$/.test(raw) ? raw === 'true' : raw;
      else {
        if (!cur[p] || typeof cur[p] !== 'object') cur[p] = {};
        cur = cur[p] as Values;
      }
    });
  }
  return out;
}
