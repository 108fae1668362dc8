/**
 * @holdfast/client for Node: typed clients for every Holdfast service over
 * gRPC (HTTP/2) or Connect (HTTP/1.1). Browsers import `@holdfast/client/web`.
 */
import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import {
  type HoldfastCallOptions,
  type HoldfastClient,
  holdfastClients,
  holdfastInterceptors,
} from "./core.js";

export * from "./core.js";

export type HoldfastClientOptions = HoldfastCallOptions & {
  /** e.g. "http://127.0.0.1:8080" */
  baseUrl: string;
  /** "grpc" (HTTP/2) or "connect" (HTTP/1.1). Default "grpc". */
  protocol?: "grpc" | "connect";
};

export function createHoldfastClient(options: HoldfastClientOptions): HoldfastClient {
  return holdfastClients(holdfastTransport(options));
}

/** The transport behind createHoldfastClient, for building clients of single services. */
export function holdfastTransport(options: HoldfastClientOptions): Transport {
  const interceptors = holdfastInterceptors(options);
  return options.protocol === "connect"
    ? createConnectTransport({ baseUrl: options.baseUrl, httpVersion: "1.1", interceptors })
    : createGrpcTransport({ baseUrl: options.baseUrl, interceptors });
}
