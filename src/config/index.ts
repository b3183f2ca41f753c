// The configuration model: document schemas and types, the loader, secret references, and the error base
// every layer throws.

export {
  API_VERSION,
  SiteSchema,
  SiteSpecSchema,
  type Arch,
  type JumpHost,
  type Site,
  type SiteHub,
  type SiteInput,
  type SiteSpec,
  type SshConfig,
} from './site.js';
export { HubSchema, type Hub, type HubSpec } from './hub.js';
export { FleetSchema, type Fleet } from './fleet.js';
export { RecipeSchema, configJsonSchema, KINDS, type ConfigDocument, type Kind, type Recipe } from './documents.js';
export {
  describeSecretSource,
  parseSecretRefArg,
  readSecretFile,
  resolveConfigPath,
  resolveSecret,
  SECRET_FILE_MAX_BYTES,
  SecretError,
  SecretRefSchema,
  type SecretRef,
} from './secret.js';
export { CONTROLLER_ONLY, formatSecretUse, secretsUsedBy, type SecretUse } from './secrets-used.js';
export {
  ConfigError,
  ERROR_KINDS,
  FsmEdgeError,
  isErrorKind,
  UsageError,
  type Diagnostic,
  type ErrorKind,
  type FsmEdgeErrorOptions,
} from './errors.js';
export { formatHostPort } from './formats.js';
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
