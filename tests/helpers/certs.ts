/**
 * A throw-away PKI made with the `openssl` CLI: a CA, server certificates for 127.0.0.1 and a
 * client certificate, as PEM files in a temporary directory. Server certificates carry both the
 * serverAuth and clientAuth usages, as kubeadm's etcd certificates do (etcd's JSON gateway
 * presents the server certificate to etcd itself when client certificates are required).
 *
 * @module
 */
import { runCommand } from "../../exec.ts";

/** Paths of the generated PEM files. */
export interface TestPki extends AsyncDisposable {
  readonly dir: string;
  readonly caFile: string;
  /** SANs DNS:localhost and IP:127.0.0.1. */
  readonly serverCert: string;
  readonly serverKey: string;
  /** Only an IP SAN, 127.0.0.1, as kubeadm issues them. */
  readonly ipOnlyCert: string;
  readonly ipOnlyKey: string;
  /** Only IP:127.0.0.2: wrong for a server reached at 127.0.0.1. */
  readonly wrongIpCert: string;
  readonly wrongIpKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
}

/** A new P-256 key (unencrypted) as `openssl req` takes it. */
const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
const SERVER_USAGE = "extendedKeyUsage=serverAuth,clientAuth\n";

async function issue(dir: string, name: string, cn: string, ext: string): Promise<void> {
  const at = (file: string) => `${dir}/${file}`;
  await Deno.writeTextFile(at(`${name}.ext`), ext);
  const csr = ["-keyout", at(`${name}.key`), "-out", at(`${name}.csr`), "-subj", `/CN=${cn}`];
  await runCommand(["openssl", "req", ...EC_KEY, ...csr]);
  const ca = ["-CA", at("ca.crt"), "-CAkey", at("ca.key"), "-CAcreateserial", "-days", "2"];
  const out = ["-out", at(`${name}.crt`), "-extfile", at(`${name}.ext`)];
  await runCommand(["openssl", "x509", "-req", "-in", at(`${name}.csr`), ...ca, ...out]);
}

/** Generate a CA, a server certificate (localhost, 127.0.0.1) and a client certificate. */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await Deno.makeTempDir({ prefix: "tt-pki-" });
  try {
    const caFiles = ["-keyout", `${dir}/ca.key`, "-out", `${dir}/ca.crt`];
    const caName = ["-days", "2", "-subj", "/CN=tartan-test-ca"];
    await runCommand(["openssl", "req", "-x509", ...EC_KEY, ...caFiles, ...caName]);
    await issue(
      dir,
      "server",
      "127.0.0.1",
      `subjectAltName=DNS:localhost,IP:127.0.0.1\n${SERVER_USAGE}`,
    );
    await issue(dir, "ip-only", "etcd", `subjectAltName=IP:127.0.0.1\n${SERVER_USAGE}`);
    await issue(dir, "wrong-ip", "etcd", `subjectAltName=IP:127.0.0.2\n${SERVER_USAGE}`);
    await issue(dir, "client", "root", "extendedKeyUsage=clientAuth\n");
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
  return {
    dir,
    caFile: `${dir}/ca.crt`,
    serverCert: `${dir}/server.crt`,
    serverKey: `${dir}/server.key`,
    ipOnlyCert: `${dir}/ip-only.crt`,
    ipOnlyKey: `${dir}/ip-only.key`,
    wrongIpCert: `${dir}/wrong-ip.crt`,
    wrongIpKey: `${dir}/wrong-ip.key`,
    clientCert: `${dir}/client.crt`,
    clientKey: `${dir}/client.key`,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}
