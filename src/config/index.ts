// The configuration model: document schemas and types, the loader, and secret references.

export { API_VERSION, SiteSchema, SiteSpecSchema, type Arch, type JumpHost, type Site, type SiteHub, type SiteInput, type SiteSpec, type SshConfig } from './site.js';
export { HubSchema, type Hub, type HubSpec } from './hub.js';
export { FleetSchema, type Fleet } from './fleet.js';
export { RecipeSchema, configJsonSchema, KINDS, type ConfigDocument, type Kind, type Recipe } from './documents.js';
export { parseSecretRefArg, resolveConfigPath, resolveSecret, SecretRefSchema, type SecretRef } from './secret.js';
export {
  checkConfigFile,
  checkConfigFilesDeep,
  checkHubRefs,
  fieldLocation,
  loadConfigFile,
  loadFleet,
  loadHub,
  loadRecipe,
  loadSite,
  loadSites,
  mergeDefaults,
  sourceOf,
  type CheckResult,
  type DeepCheckResult,
  type InstallConfig,
  type LoadedDocument,
  type LoadedFleet,
  type SourceLocation,
} from './load.js';
