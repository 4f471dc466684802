/**
 * The places the admitted leases hold, for the lease gate's overlap checks: each held subnet, a
 * count of the held subnets under every supernet inside the network (so a lease that contains a
 * held subnet is found with one lookup), and each held VTEP MAC, all by holder identity.
 *
 * @module
 */
import { type Family, type IPNet, prefixMask } from "../ip/mod.ts";

/** What one lease holds in one address family. */
export interface Place {
  readonly family: Family;
  readonly subnet: IPNet;
  /** The cluster network of that family. */
  readonly network: IPNet;
  /** The canonical VtepMAC, when the gate checks it and the lease has one. */
  readonly mac: string | undefined;
}

/** IPv6 prefix masks by length, made once. */
const V6_MASKS = Array.from({ length: 129 }, (_, q) => prefixMask(6, q));

/** A network as a map key: IPv4 as one number (base · 64 + prefix), IPv6 as text. */
type NetKey = number | string;

function v4Key(base: number, prefix: number): number {
  return base * 64 + prefix;
}

function v6Key(base: bigint, prefix: number): string {
  return `${base.toString(16)}/${prefix}`;
}

function netKey(net: IPNet): NetKey {
  return net.family === 4 ? v4Key(Number(net.base), net.prefix) : v6Key(net.base, net.prefix);
}

/**
 * Keys of the supernets of `net` strictly inside `network`, longest first, `net` itself
 * included when asked. IPv4 in plain number arithmetic: a snapshot of 10 000 leases in a /8
 * makes 160 000 of these.
 */
function prefixKeys(net: IPNet, network: IPNet, includeSelf: boolean): NetKey[] {
  const keys: NetKey[] = [];
  const last = includeSelf ? net.prefix : net.prefix - 1;
  const base4 = net.family === 4 ? Number(net.base) : 0;
  for (let q = last; q > network.prefix; q--) {
    keys.push(
      net.family === 4
        ? v4Key((base4 & (0xffff_ffff << (32 - q))) >>> 0, q)
        : v6Key(net.base & V6_MASKS[q], q),
    );
  }
  return keys;
}

function macKey(place: Place): string | undefined {
  return place.mac && `${place.family}/${place.mac}`;
}

/** The held places, by holder identity. */
export class HeldPlaces {
  /** Held subnets → holder. */
  readonly #subnets = new Map<NetKey, string>();
  /** Strict supernets (inside the network) of held subnets → how many held subnets they cover. */
  readonly #covered = new Map<NetKey, number>();
  /** `<family>/<mac>` → holder. */
  readonly #macs = new Map<string, string>();

  clear(): void {
    this.#subnets.clear();
    this.#covered.clear();
    this.#macs.clear();
  }

  hold(id: string, places: readonly Place[]): void {
    for (const place of places) {
      this.#subnets.set(netKey(place.subnet), id);
      this.#cover(place, 1);
      const mac = macKey(place);
      if (mac) this.#macs.set(mac, id);
    }
  }

  release(id: string, places: readonly Place[]): void {
    for (const place of places) {
      this.#subnets.delete(netKey(place.subnet));
      this.#cover(place, -1);
      const mac = macKey(place);
      if (mac && this.#macs.get(mac) === id) this.#macs.delete(mac);
    }
  }

  /** The holder of a subnet equal to `subnet` or containing it, the longest first. */
  holderOver(subnet: IPNet, network: IPNet): string | undefined {
    for (const key of prefixKeys(subnet, network, true)) {
      const holder = this.#subnets.get(key);
      if (holder) return holder;
    }
    return undefined;
  }

  /** Whether `subnet` contains a held subnet. */
  coversHeld(subnet: IPNet): boolean {
    return this.#covered.has(netKey(subnet));
  }

  /** The holder of the VTEP MAC `mac` in `family`. */
  macHolder(family: Family, mac: string): string | undefined {
    return this.#macs.get(`${family}/${mac}`);
  }

  #cover(place: Place, delta: 1 | -1): void {
    for (const key of prefixKeys(place.subnet, place.network, false)) {
      const count = (this.#covered.get(key) ?? 0) + delta;
      if (count > 0) this.#covered.set(key, count);
      else this.#covered.delete(key);
    }
  }
}
