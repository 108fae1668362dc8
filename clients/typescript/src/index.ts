/**
 * @holdfast/client for Node: typed clients for every Holdfast service over
 * gRPC (HTTP/2) or Connect (HTTP/1.1). Browsers import `@holdfast/client/web`.
 */
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { type HoldfastCallOptions, holdfastEntry } from "./core.js";

export * from "./core.js";

export type HoldfastClientOptions = HoldfastCallOptions & {
  /** e.g. "http://127.0.0.1:8080" */
  baseUrl: string;
  /** "grpc" (HTTP/2) or "connect" (HTTP/1.1). Default "grpc". */
  protocol?: "grpc" | "connect";
};

export const { createHoldfastClient, holdfastTransport } = holdfastEntry(
  ({ baseUrl, protocol }: HoldfastClientOptions, interceptors) =>
    protocol === "connect"
      ? createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors })
      : createGrpcTransport({ baseUrl, interceptors }),
);
