/**
 * Acquiring a lease in etcd (spec §3.4): take our own key back when it still fits the config,
 * else the subnet a previous run left in `subnet.env` when free, else a uniformly chosen free one
 * (quirk 30), created only if no other node got there first. Lost races are retried with another
 * candidate (quirk 3); a reservation with our public IP stays a reservation (quirk 4).
 *
 * @module
 */
import type { NetworkConfig } from "../config/network_config.ts";
import { errorText, type Logger } from "../log.ts";
import { sleep } from "../sleep.ts";
import { addrEqual, formatAddr, formatNet, type IPNet } from "../ip/mod.ts";
import { fitsConfig, fitsFamily, isFree, pickFreeSubnet } from "./allocate.ts";
import { Backoff } from "../backoff.ts";
import { type EtcdLeaseStore, type ListedKey, type OwnLease, subnetsOf } from "./etcd_store.ts";
import type { LeaseAttrs, LeaseSubnets } from "./lease.ts";
import { AcquireConflictError, OutOfSubnetsError } from "./manager.ts";

const MAX_ACQUIRE_ATTEMPTS = 10;

/** Whether a lease was published by this node: same PublicIP (PublicIPv6 when IPv6-only). */
export function isOurs(config: NetworkConfig | undefined, theirs: LeaseAttrs, ours: LeaseAttrs) {
  if (config?.ipv4) return addrEqual(theirs.publicIP, ours.publicIP);
  return !!theirs.publicIPv6 && !!ours.publicIPv6 && addrEqual(theirs.publicIPv6, ours.publicIPv6);
}

/**
 * Acquire a lease for `attrs`, preferring the `previous` subnets: retries failed reads with
 * backoff until `signal` aborts, and lost races up to ten times.
 *
 * @throws {OutOfSubnetsError} when the network has no free subnet.
 * @throws {AcquireConflictError} when every attempt lost a race.
 */
export async function acquire(
  store: EtcdLeaseStore,
  config: NetworkConfig,
  attrs: LeaseAttrs,
  previous: LeaseSubnets,
  log: Logger,
  signal: AbortSignal,
): Promise<OwnLease> {
  const backoff = new Backoff(100, 5000);
  let attempts = 0;
  while (attempts < MAX_ACQUIRE_ATTEMPTS) {
    signal.throwIfAborted();
    let own: OwnLease | undefined;
    try {
      own = await tryAcquire(store, config, attrs, previous, await store.list(), log);
    } catch (error) {
      if (error instanceof OutOfSubnetsError) throw error;
      log.warn("lease acquisition failed; retrying", { error: errorText(error) });
      await sleep(backoff.next(), signal);
      continue;
    }
    if (own) return own;
    attempts++;
    log.info("another node took the chosen subnet first; retrying", { attempts });
    await sleep(Math.random() * 20 * attempts, signal); // spread out contending nodes
  }
  throw new AcquireConflictError(attempts);
}

/** One pass over a listing; undefined when another node won a race. */
async function tryAcquire(
  store: EtcdLeaseStore,
  config: NetworkConfig,
  attrs: LeaseAttrs,
  previous: LeaseSubnets,
  listed: ListedKey[],
  log: Logger,
): Promise<OwnLease | undefined> {
  let others = listed;
  const mine = listed.find((entry) => entry.lease && isOurs(config, entry.lease.attrs, attrs));
  if (mine?.lease) {
    if (fitsConfig(config, mine.lease)) {
      return await store.claim(mine.kv, subnetsOf(mine.lease), attrs);
    }
    if (mine.lease.reserved) {
      log.warn("a reservation with our public IP does not fit the config; left alone", {
        key: mine.name,
      });
    } else {
      log.warn("deleting our lease: it does not fit the config", { key: mine.name });
      if (!await store.deleteIfUnchanged(mine.kv)) return undefined;
      others = listed.filter((entry) => entry !== mine);
    }
  }
  const occupied = others.flatMap((entry) => entry.ranges);
  const choose = (family: "ipv4" | "ipv6", prev: IPNet | undefined): IPNet | undefined => {
    const fam = config[family];
    if (!fam) return undefined;
    if (prev && fitsFamily(fam, prev) && isFree(prev, occupied)) return prev;
    const subnet = pickFreeSubnet(fam, occupied);
    if (!subnet) {
      throw new OutOfSubnetsError(
        `no free /${fam.subnetLen} in ${formatNet(fam.network)} between ` +
          `${formatAddr(fam.subnetMin)} and ${formatAddr(fam.subnetMax)}`,
      );
    }
    return subnet;
  };
  const subnet = choose("ipv4", previous.subnet);
  const ipv6Subnet = choose("ipv6", previous.ipv6Subnet);
  return await store.create(subnetsOf({ subnet, ipv6Subnet }), attrs);
}
