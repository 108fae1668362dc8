import type { QueryResult, QueryResultRow } from "pg";
import { activeTraceparent } from "../tracing.js";
import type { Queryable } from "./pool.js";

/** A named statement, as pg takes it. */
export type NamedQuery = { name: string; text: string; values: unknown[] };

/**
 * `q` for a booking write that records the active span's traceparent with
 * the outbox events it writes, in the same transaction: outbox.traceparent
 * defaults to the transaction-local setting holdfast.traceparent
 * (0010_trace_context.sql), which the same statement sets first, in a
 * materialized CTE. The statement's text is a SELECT without a FROM clause.
 *
 * With no span active (tracing off, or a write outside any call) the
 * statement runs as it is: nothing is added to the hot path.
 */
export function traced(q: Queryable): {
  query<R extends QueryResultRow>(query: NamedQuery): Promise<QueryResult<R>>;
} {
  return {
    query<R extends QueryResultRow>(query: NamedQuery) {
      const traceparent = activeTraceparent();
      if (traceparent === undefined) return q.query<R>(query);
      return q.query<R>({
        name: `${query.name}_traced`,
        text: `WITH trace AS MATERIALIZED (SELECT set_config('holdfast.traceparent', $${query.values.length + 1}, true))
               ${query.text} FROM trace`,
        values: [...query.values, traceparent],
      });
    },
  };
}
