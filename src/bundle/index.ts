// The bundle library's public surface (the CLI, the install phases and scripts import from here).
export { buildBundle, featureClosure, type BuildEvent, type BuildOptions, type BuildResult, BuildError } from './build.js';
export {
  readVerifiedBundle,
  verifyBundle,
  verifyBundleContent,
  VerifyError,
  type VerifiedBundle,
  type VerifyOptions,
  type VerifyResult,
} from './verify.js';
export { inspectBundle, renderInspect, formatBytes, type InspectReport } from './inspect.js';
export { diffBundles, type BundleDiff, type ArchDiff } from './diff.js';
export { exportBundle, importBundle, parseSize, FAT32_MAX_FILE, type ExportResult } from './export.js';
export { generateKeyPair, loadPrivateKey, loadPublicKey, keyId, SigningKeyError } from './sign.js';
export {
  wantedBlobs,
  popAssemblePlan,
  popAssembleCommand,
  parseAssembleOutput,
  archiveName,
  DEFAULT_POP_PATHS,
  type PopAssembly,
  type PopAssembleOptions,
  type PopCommandOptions,
  type PopPaths,
  type AssembleReport,
} from './pop.js';
export {
  readBundleDoc,
  parseBundleDoc,
  compareBundleAge,
  compareBuilds,
  archContent,
  archBlobs,
  BundleDocSchema,
  BundleFormatError,
  SAFE_NAME,
  type BundleDoc,
  type BundleBuild,
  type ArchContent,
  type BundleImage,
  type BundleFile,
} from './format.js';
export { readLock, serializeLock, writeLock, RecipeError, type Lock } from './lock-file.js';
export * as bundleLayout from './layout.js';
