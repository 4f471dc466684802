/**
 * etcd endpoints in every form etcd's own client accepts, and the HTTP transport for each.
 *
 * - `http://host:port`, `https://host:port`: the host may be a name or an IP address; over TLS
 *   the certificate is verified against it either way (IP SANs for an address, as kubeadm's etcd
 *   certificates carry).
 * - `host:port`: https when TLS files are given (`--etcd-cafile`, `--etcd-certfile`), else http,
 *   as etcd's client decides.
 * - `unix://path`: a unix socket. The path is everything after `//`, so `unix://localhost:2379`
 *   is the socket `localhost:2379` in the working directory, where
 *   `etcd --listen-client-urls unix://localhost:2379` creates it. (`unixs://`, TLS over a socket,
 *   is refused: Deno's HTTP client sends plain HTTP over a unix socket.)
 *
 * @module
 */

/** Raised for connection options that cannot work (bad endpoints, missing files, …). */
export class EtcdOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EtcdOptionsError";
  }
}

/** Where one endpoint's requests go. */
export interface Endpoint {
  /** The endpoint as given, for messages. */
  readonly name: string;
  /** Origin that request paths are appended to, e.g. `https://10.0.0.1:2379`. */
  readonly origin: string;
  /** The socket, for a unix endpoint. */
  readonly unixPath?: string;
}

/** PEM texts that secure the https connections. */
export interface TlsMaterial {
  readonly caCerts?: readonly string[];
  readonly cert?: string;
  readonly key?: string;
}

/** Parse one endpoint; `tlsConfigured` picks the scheme of a bare `host:port`. */
export function parseEndpoint(text: string, tlsConfigured: boolean): Endpoint {
  const name = text.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(name)?.[1].toLowerCase();
  if (scheme === "unix") {
    const unixPath = name.slice("unix://".length);
    if (!unixPath) throw new EtcdOptionsError(`etcd endpoint ${name} names no socket`);
    // The URL's host is only the Host header.
    return { name, origin: "http://localhost", unixPath };
  }
  if (scheme === "unixs") {
    throw new EtcdOptionsError(
      `etcd endpoint ${name}: TLS over a unix socket is not supported; use unix:// or https://`,
    );
  }
  if (scheme !== undefined && scheme !== "http" && scheme !== "https") {
    throw new EtcdOptionsError(
      `etcd endpoint ${name} must be http://, https://, unix:// or host:port`,
    );
  }
  const withScheme = scheme ? name : `${tlsConfigured ? "https" : "http"}://${name}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new EtcdOptionsError(`invalid etcd endpoint ${name}`);
  }
  if (!url.hostname || (url.pathname !== "/" && url.pathname !== "") || url.search) {
    throw new EtcdOptionsError(`etcd endpoint ${name} must be scheme://host:port, no path`);
  }
  return { name, origin: url.origin };
}

/**
 * An HTTP client for `endpoint`. TLS verifies the server against `caCerts` (added to the
 * bundled roots, as Deno cannot replace them) and the endpoint's host, name or IP address.
 */
export function httpClientFor(endpoint: Endpoint, tls: TlsMaterial): Deno.HttpClient {
  const options: Deno.CreateHttpClientOptions = {
    ...(tls.caCerts && { caCerts: [...tls.caCerts] }),
    ...(endpoint.unixPath && { proxy: { transport: "unix", path: endpoint.unixPath } }),
  };
  return tls.cert && tls.key
    ? Deno.createHttpClient({ ...options, cert: tls.cert, key: tls.key })
    : Deno.createHttpClient(options);
}

/** The TLS files of an etcd connection (flanneld's `--etcd-cafile`, `-certfile`, `-keyfile`). */
export interface TlsFiles {
  /** CA bundle that verifies the server; honoured on its own too (flannel needs cert+key, quirk 19). */
  readonly caFile?: string;
  /** Client certificate; needs `keyFile`. */
  readonly certFile?: string;
  readonly keyFile?: string;
}

function readPem(path: string, what: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    throw new EtcdOptionsError(`cannot read etcd ${what} ${path}: ${(error as Error).message}`);
  }
}

/** Read the PEM texts of `files`; throws {@link EtcdOptionsError} when one cannot be read. */
export function tlsMaterial(files: TlsFiles): TlsMaterial {
  const { caFile, certFile, keyFile } = files;
  if (!!certFile !== !!keyFile) {
    throw new EtcdOptionsError("etcd certfile and keyfile must be given together");
  }
  return {
    ...(caFile && { caCerts: [readPem(caFile, "cafile")] }),
    ...(certFile && keyFile && {
      cert: readPem(certFile, "certfile"),
      key: readPem(keyFile, "keyfile"),
    }),
  };
}
