// `kind: Hub` — how to reach the federation hub cluster where POPs are registered as FSM `Cluster` resources.

import { z } from 'zod';
import { strictObject } from './fields.js';
import { SecretRefSchema } from './secret.js';
import { API_VERSION, K8sNameSchema } from './site.js';

export const HubSpecSchema = strictObject({
  kubeconfig: SecretRefSchema.meta({
    description: 'Kubeconfig of the hub cluster: {file: PATH} or {env: NAME} (a secret: it holds credentials)',
  }),
  context: z.string().min(1).optional().meta({ description: 'Kubeconfig context; default: its current-context' }),
  fsmNamespace: K8sNameSchema.default('fsm-system').meta({ description: 'Namespace FSM runs in, on the hub and on every POP' }),
});

export const HubSchema = strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('Hub'),
  metadata: strictObject({ name: K8sNameSchema.meta({ description: 'Hub name; sites refer to it in spec.hub.ref' }) }),
  spec: HubSpecSchema,
}).meta({ description: 'The federation hub cluster POPs register with' });

export type Hub = z.infer<typeof HubSchema>;
export type HubSpec = Hub['spec'];
