/**
 * @holdfast/client/web: the same typed clients over `fetch`, for browsers
 * (and any runtime with fetch): Connect or gRPC-Web.
 */
import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import {
  type HoldfastCallOptions,
  type HoldfastClient,
  holdfastClients,
  holdfastInterceptors,
} from "./core.js";

export * from "./core.js";

export type HoldfastWebClientOptions = HoldfastCallOptions & {
  /** e.g. "https://holdfast.example.com" */
  baseUrl: string;
  /** "connect" (Connect with JSON bodies) or "grpc-web". Default "connect". */
  protocol?: "connect" | "grpc-web";
};

export function createHoldfastClient(options: HoldfastWebClientOptions): HoldfastClient {
  return holdfastClients(holdfastTransport(options));
}

/** The transport behind createHoldfastClient, for building clients of single services. */
export function holdfastTransport(options: HoldfastWebClientOptions): Transport {
  const interceptors = holdfastInterceptors(options);
  return options.protocol === "grpc-web"
    ? createGrpcWebTransport({ baseUrl: options.baseUrl, interceptors })
    : createConnectTransport({ baseUrl: options.baseUrl, interceptors });
}
