import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { AvailabilityService } from "../../gen/holdfast/v1/availability_pb.js";
import { BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";

/** Who is calling the MCP server: the API's own answer to GetCaller. */
export type McpCaller = { tenantId: string; apiKeyId: string; scopes: readonly string[] };

/**
 * The Holdfast API as one caller sees it: typed clients whose every call
 * carries the caller's own Authorization header, so the API decides what
 * the caller may do and whose data it sees, exactly as for a direct call.
 */
export type McpApi = {
  caller: McpCaller;
  bookings: Client<typeof BookingService>;
  availability: Client<typeof AvailabilityService>;
  resources: Client<typeof ResourceService>;
  catalog: Client<typeof CatalogService>;
};

/**
 * Clients for the caller behind `authorization` ("Bearer hf_..."), after
 * asking the API who that is. Rejects with the API's own ConnectError
 * (UNAUTHENTICATED) for a missing or unknown key.
 */
export async function apiFor(transport: Transport, authorization: string): Promise<McpApi> {
  const t: Transport = {
    unary: (method, signal, timeoutMs, header, input, contextValues) => {
      const h = new Headers(header);
      h.set("authorization", authorization);
      return transport.unary(method, signal, timeoutMs, h, input, contextValues);
    },
    stream: (method, signal, timeoutMs, header, input, contextValues) => {
      const h = new Headers(header);
      h.set("authorization", authorization);
      return transport.stream(method, signal, timeoutMs, h, input, contextValues);
    },
  };
  const caller = await createClient(KeyService, t).getCaller({});
  return {
    caller: { tenantId: caller.tenantId, apiKeyId: caller.apiKeyId, scopes: caller.scopes },
    bookings: createClient(BookingService, t),
    availability: createClient(AvailabilityService, t),
    resources: createClient(ResourceService, t),
    catalog: createClient(CatalogService, t),
  };
}
