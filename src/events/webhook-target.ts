import type { LookupAddress } from "node:dns";
import { lookup } from "node:dns/promises";
import { isIP, type LookupFunction } from "node:net";
import { Agent, type Dispatcher } from "undici";
import { addressProblem } from "../domain/webhooks.js";

/** Resolves a host name to all its addresses (dns.lookup by default; tests pass their own). */
export type Resolve = (hostname: string) => Promise<readonly LookupAddress[]>;

export const systemResolve: Resolve = (hostname) => lookup(hostname, { all: true });

/** A delivery refused because of where its URL leads. */
export class RefusedTarget extends Error {
  readonly code = "EREFUSEDTARGET";
}

/**
 * The dispatcher every delivery is sent through. Unless private targets
 * are allowed, the addresses a name resolves to are checked inside the
 * connection itself (undici hands `lookup` to net.connect / tls.connect),
 * so the address checked is the address dialled: a name that answered a
 * public address earlier and a private one now (DNS rebinding) is refused
 * when it is dialled. A name with any non-public address is refused whole.
 * Addresses written in the URL are never looked up: see refuseLiteral.
 */
export function webhookDispatcher(opts: {
  allowPrivate: boolean;
  resolve?: Resolve | undefined;
}): Dispatcher {
  return new Agent({
    connect: { lookup: guardedLookup(opts.resolve ?? systemResolve, opts.allowPrivate) },
  });
}

function guardedLookup(resolve: Resolve, allowPrivate: boolean): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname)
      .then((all) => {
        if (!allowPrivate) {
          for (const a of all) {
            const range = addressProblem(a.address);
            if (range) {
              throw new RefusedTarget(
                `refused: ${hostname} resolves to a non-public address (${range})`,
              );
            }
          }
        }
        const family =
          options.family === 4 || options.family === "IPv4"
            ? 4
            : options.family === 6 || options.family === "IPv6"
              ? 6
              : 0;
        const usable = family === 0 ? all : all.filter((a) => a.family === family);
        const first = usable[0];
        if (!first) {
          throw Object.assign(new Error(`${hostname} has no address`), { code: "ENOTFOUND" });
        }
        if (options.all) callback(null, [...usable]);
        else callback(null, first.address, first.family);
      })
      .catch((err: NodeJS.ErrnoException) => callback(err, "", 0));
  };
}

/** An IP address written in the URL is dialled without a lookup, so it is checked here. */
export function refuseLiteral(url: string, allowPrivate: boolean): void {
  if (allowPrivate) return;
  const host = new URL(url).hostname.replace(/^\[|\]$/g, "");
  const range = isIP(host) ? addressProblem(host) : undefined;
  if (range) throw new RefusedTarget(`refused: ${host} is a non-public address (${range})`);
}
