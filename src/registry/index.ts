export { RegistryClient, type Repo, type UploadResult, type FetchedManifest } from "./client.js";
export { Transport, DEFAULT_RETRY, type RetryPolicy, type TransportOptions } from "./transport.js";
export { DockerConfigCredentials, anonymous, type Credential, type CredentialStore } from "./credentials.js";
export { registryArtifact } from "./artifact.js";
export { redactUrl } from "./errors.js";
