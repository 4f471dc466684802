/**
 * Where the Kubernetes API is and how to authenticate to it, resolved as flannel (client-go's
 * `BuildConfigFromFlags`) does: `--kubeconfig-file` (its current context), with `--kube-api-url`
 * replacing the server when both are given; `--kube-api-url` alone for an unauthenticated
 * endpoint; neither ⇒ the pod's service account.
 *
 * Supported credentials: bearer tokens, token files and the service-account token (re-read for
 * every request, so rotated tokens are picked up), client certificates (files or inline data),
 * and basic auth. Exec plugins, auth providers, proxies and `tls-server-name` are refused with a
 * message saying so, rather than half-honoured.
 *
 * @module
 */
import { parentDir } from "../fsync.ts";
import { errorText } from "../log.ts";

/** Where the API is: flannel's two flags, or (both empty) the pod's service account. */
export interface KubeConfigSource {
  /** `--kube-api-url`: overrides the server of the kubeconfig, or alone means anonymous access. */
  readonly apiUrl?: string;
  /** `--kubeconfig-file`. */
  readonly kubeconfigFile?: string;
  /** Tests only: root under which `/var/run/secrets/kubernetes.io/serviceaccount` lives. */
  readonly serviceAccountRoot?: string;
}

/** The API cannot be located or the kubeconfig cannot be read. */
export class KubeConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "KubeConfigError";
  }
}

/** TLS material as PEM text. */
export interface KubeTls {
  /** Trusted CAs; the system roots when absent. */
  readonly caCerts?: readonly string[];
  /** Client certificate and key. */
  readonly cert?: string;
  readonly key?: string;
}

/** A resolved API endpoint. */
export interface KubeConnection {
  /** Base URL, e.g. `https://10.96.0.1:443`, without a trailing slash. */
  readonly server: string;
  readonly tls: KubeTls;
  /** The `Authorization` header for the next request, if any (token files are re-read). */
  authorization(): Promise<string | undefined>;
}

const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** A kubeconfig's named entry (`clusters`, `users`, `contexts`), unchecked. */
type Entries = ReadonlyArray<{ name?: unknown } & Record<string, unknown>>;
type Fields = Readonly<Record<string, unknown>>;

/**
 * Resolve the API endpoint and credentials.
 *
 * @throws {KubeConfigError} when the kubeconfig cannot be read or uses what is not supported, or
 *   in-cluster mode is chosen outside a pod.
 */
export async function loadKubeConfig(source: KubeConfigSource): Promise<KubeConnection> {
  const apiUrl = source.apiUrl ?? "";
  if (source.kubeconfigFile) return await fromKubeconfig(source.kubeconfigFile, apiUrl);
  if (apiUrl) return connection(apiUrl, {}, () => Promise.resolve(undefined));
  return await inCluster(source.serviceAccountRoot ?? "");
}

function connection(
  server: string,
  tls: KubeTls,
  authorization: () => Promise<string | undefined>,
): KubeConnection {
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new KubeConfigError(`API server URL ${JSON.stringify(server)} is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new KubeConfigError(`API server URL ${server} must be http or https`);
  }
  return { server: server.replace(/\/+$/, ""), tls, authorization };
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    throw new KubeConfigError(`cannot read ${what} ${path}: ${errorText(error)}`);
  }
}

async function inCluster(root: string): Promise<KubeConnection> {
  const host = Deno.env.get("KUBERNETES_SERVICE_HOST");
  const port = Deno.env.get("KUBERNETES_SERVICE_PORT");
  if (!host || !port) {
    throw new KubeConfigError(
      "not running in a pod (KUBERNETES_SERVICE_HOST/PORT unset): " +
        "give --kubeconfig-file or --kube-api-url",
    );
  }
  const dir = `${root}${SERVICE_ACCOUNT_DIR}`;
  const tokenFile = `${dir}/token`;
  await readText(tokenFile, "service account token"); // fail now, not at the first request
  const ca = await readText(`${dir}/ca.crt`, "service account CA");
  const hostPart = host.includes(":") ? `[${host}]` : host;
  return connection(`https://${hostPart}:${port}`, { caCerts: [ca] }, () => bearerFrom(tokenFile));
}

async function bearerFrom(tokenFile: string): Promise<string> {
  return `Bearer ${(await readText(tokenFile, "token file")).trim()}`;
}

function named(list: unknown, name: unknown, kind: string, file: string): Fields {
  const entry = Array.isArray(list)
    ? (list as Entries).find((item) => item?.name === name)
    : undefined;
  const body = entry?.[kind];
  if (!body || typeof body !== "object") {
    throw new KubeConfigError(`kubeconfig ${file} has no ${kind} ${JSON.stringify(name)}`);
  }
  return body as Fields;
}

function optionalString(fields: Fields, key: string, file: string): string | undefined {
  const value = fields[key];
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value !== "string") {
    throw new KubeConfigError(`kubeconfig ${file}: ${key} must be a string`);
  }
  return value;
}

function refuse(fields: Fields, keys: readonly string[], file: string, hint: string): void {
  for (const key of keys) {
    if (fields[key] !== undefined && fields[key] !== null && fields[key] !== "") {
      throw new KubeConfigError(`kubeconfig ${file}: ${key} is not supported; ${hint}`);
    }
  }
}

/** PEM text from `<key>-data` (base64) or the file `<key>` (relative to the kubeconfig). */
async function pem(fields: Fields, key: string, dir: string, file: string) {
  const data = optionalString(fields, `${key}-data`, file);
  if (data) {
    try {
      return new TextDecoder().decode(Uint8Array.from(atob(data), (c) => c.charCodeAt(0)));
    } catch {
      throw new KubeConfigError(`kubeconfig ${file}: ${key}-data is not base64`);
    }
  }
  const path = optionalString(fields, key, file);
  return path ? await readText(resolvePath(path, dir), key) : undefined;
}

/** Base64 of the UTF-8 bytes of `text` (btoa alone takes Latin-1 only). */
function base64(text: string): string {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}

function resolvePath(path: string, dir: string): string {
  return path.startsWith("/") ? path : `${dir}/${path}`;
}

async function parseDocument(text: string, file: string): Promise<Fields> {
  let doc: unknown;
  try {
    // Only kubeconfig files need YAML: the parser is not loaded in-cluster or with an API URL.
    const { load } = await import("js-yaml");
    doc = load(text);
  } catch (error) {
    throw new KubeConfigError(`cannot parse kubeconfig ${file}: ${errorText(error)}`);
  }
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) {
    throw new KubeConfigError(`kubeconfig ${file} is not a mapping`);
  }
  return doc as Fields;
}

async function fromKubeconfig(file: string, apiUrl: string): Promise<KubeConnection> {
  const doc = await parseDocument(await readText(file, "kubeconfig"), file);
  const dir = parentDir(file);
  const contextName = optionalString(doc, "current-context", file);
  if (!contextName) throw new KubeConfigError(`kubeconfig ${file} has no current-context`);
  const context = named(doc.contexts, contextName, "context", file);
  const cluster = named(doc.clusters, context.cluster, "cluster", file);
  const user = context.user === undefined || context.user === ""
    ? {}
    : named(doc.users, context.user, "user", file);

  const server = apiUrl || optionalString(cluster, "server", file);
  if (!server) throw new KubeConfigError(`kubeconfig ${file}: the current cluster has no server`);
  if (cluster["insecure-skip-tls-verify"] === true && server.startsWith("https:")) {
    throw new KubeConfigError(
      `insecure-skip-tls-verify is not supported for ${server}: give the cluster's CA`,
    );
  }
  refuse(cluster, ["proxy-url", "tls-server-name"], file, "reach the API server directly");
  refuse(
    user,
    ["exec", "auth-provider", "as", "as-groups", "as-uid"],
    file,
    "use a token, a token file or a client certificate",
  );

  const ca = await pem(cluster, "certificate-authority", dir, file);
  const cert = await pem(user, "client-certificate", dir, file);
  const key = await pem(user, "client-key", dir, file);
  if ((cert === undefined) !== (key === undefined)) {
    throw new KubeConfigError(`kubeconfig ${file}: a client certificate needs its key, and back`);
  }
  const tls: KubeTls = { ...(ca && { caCerts: [ca] }), ...(cert && key && { cert, key }) };

  const token = optionalString(user, "token", file);
  const tokenFile = optionalString(user, "tokenFile", file);
  const username = optionalString(user, "username", file);
  const password = optionalString(user, "password", file) ?? "";
  const authorization = token
    ? () => Promise.resolve(`Bearer ${token}`)
    : tokenFile
    ? () => bearerFrom(resolvePath(tokenFile, dir))
    : username
    ? () => Promise.resolve(`Basic ${base64(`${username}:${password}`)}`)
    : () => Promise.resolve(undefined);
  if (tokenFile && !token) await authorization(); // an unreadable token file fails at start
  return connection(server, tls, authorization);
}
