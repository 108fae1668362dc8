/**
 * @holdfast/client/web: the same typed clients over `fetch`, for browsers
 * (and any runtime with fetch): Connect or gRPC-Web.
 */
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { type HoldfastCallOptions, holdfastEntry } from "./core.js";

export * from "./core.js";

export type HoldfastWebClientOptions = HoldfastCallOptions & {
  /** e.g. "https://holdfast.example.com" */
  baseUrl: string;
  /** "connect" (Connect with JSON bodies) or "grpc-web". Default "connect". */
  protocol?: "connect" | "grpc-web";
};

export const { createHoldfastClient, holdfastTransport } = holdfastEntry(
  ({ baseUrl, protocol }: HoldfastWebClientOptions, interceptors) =>
    protocol === "grpc-web"
      ? createGrpcWebTransport({ baseUrl, interceptors })
      : createConnectTransport({ baseUrl, interceptors }),
);
