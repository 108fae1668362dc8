import type { Queryable } from "./pool.js";

/**
 * The whole schema of the current database as one SQL text, so a reviewer
 * reads every table, index and function in one file (src/db/schema.sql,
 * written by `npm run schema`) and every change to them in its diff.
 *
 * Built from the catalogs rather than with pg_dump: pg_dump refuses servers
 * newer than itself (the machine's is 15, the embedded server 18) and its
 * output changes between versions. The same schema gives the same text on
 * Postgres 15 to 18: objects are ordered by name in the "C" collation, and
 * only definitions are printed (no OIDs, owners, versions or dates).
 * Kinds of object it does not print yet make it throw rather than leave
 * them out silently.
 */
export async function dumpSchema(db: Queryable): Promise<string> {
  await refuseUnprintedObjects(db);
  const out: string[] = [
    "-- The schema a freshly migrated Holdfast database has: written by",
    "-- `npm run schema` from the catalogs, checked by CI. Do not edit: change",
    "-- src/db/migrations/ or src/db/functions/ and run `npm run schema`.",
  ];

  const extensions = await db.query<{ name: string }>(
    `SELECT extname AS name FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY extname COLLATE "C"`,
  );
  if (extensions.rows.length > 0) {
    out.push("", "-- Extensions");
    for (const e of extensions.rows) out.push(`CREATE EXTENSION IF NOT EXISTS ${e.name};`);
  }

  const functions = await ownFunctions(db);
  const fromMigrations = functions.filter((f) => f.file === null);
  if (fromMigrations.length > 0) {
    out.push("", "-- Functions created by migrations (tables depend on them)");
    for (const f of fromMigrations) out.push("", f.definition);
  }

  for (const table of await tables(db)) out.push("", table);

  let file: string | null = null;
  for (const f of functions.filter((f) => f.file !== null)) {
    if (f.file !== file) {
      file = f.file;
      out.push("", `-- Functions from src/db/functions/${file}`);
    }
    out.push("", f.definition);
  }
  return `${out.join("\n")}\n`;
}

/** Kinds of object the dump would leave out: refuse them by name. */
async function refuseUnprintedObjects(db: Queryable): Promise<void> {
  const { rows } = await db.query<{ kind: string; name: string }>(
    `SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
              WHEN 'S' THEN 'sequence' WHEN 'p' THEN 'partitioned table' ELSE 'relation' END AS kind,
            c.relname AS name
     FROM pg_class c
     WHERE c.relnamespace = current_schema()::regnamespace
       AND c.relkind NOT IN ('r', 'i', 'c')
       -- Sequences of identity columns are printed with their column.
       AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d
                 WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'i'))
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                       WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
     UNION ALL
     SELECT 'type', t.typname FROM pg_type t
     WHERE t.typnamespace = current_schema()::regnamespace AND t.typtype IN ('e', 'd', 'r', 'm')
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                       WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
     UNION ALL
     SELECT 'composite type', t.typname FROM pg_type t JOIN pg_class c ON c.oid = t.typrelid
     WHERE t.typnamespace = current_schema()::regnamespace AND c.relkind = 'c'
     ORDER BY 1, 2`,
  );
  if (rows.length > 0) {
    throw new Error(
      `the schema dump does not print ${rows.map((r) => `${r.kind} ${r.name}`).join(", ")}: teach src/db/schema-dump.ts to`,
    );
  }
}

type FunctionDefinition = { file: string | null; definition: string };

/**
 * The schema's own functions (not extensions'), each with the function file
 * that created it (null: a migration did), ordered by file, then signature.
 */
async function ownFunctions(db: Queryable): Promise<FunctionDefinition[]> {
  const hasFiles = await db.query<{ present: boolean }>(
    "SELECT to_regclass('schema_functions') IS NOT NULL AS present",
  );
  const file = hasFiles.rows[0]?.present
    ? "(SELECT sf.file FROM schema_functions sf WHERE p.oid::regprocedure::text = ANY (sf.functions))"
    : "NULL::text";
  const { rows } = await db.query<FunctionDefinition>(
    `SELECT file, definition FROM (
       SELECT ${file} AS file, p.oid::regprocedure::text AS signature,
              rtrim(pg_get_functiondef(p.oid), E'\\n') || ';' AS definition
       FROM pg_proc p
       WHERE p.pronamespace = current_schema()::regnamespace
         AND NOT EXISTS (SELECT 1 FROM pg_depend d
                         WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
     ) f
     ORDER BY file COLLATE "C" NULLS FIRST, signature COLLATE "C"`,
  );
  return rows;
}

/** Each table with its columns and constraints, then its other indexes and its triggers. */
async function tables(db: Queryable): Promise<string[]> {
  const { rows } = await db.query<{ definition: string }>(
    `SELECT 'CREATE ' || CASE c.relpersistence WHEN 'u' THEN 'UNLOGGED ' ELSE '' END
              || 'TABLE ' || quote_ident(c.relname) || ' (' || E'\\n'
              || array_to_string(cols.lines || cons.lines, E',\\n') || E'\\n)'
              || coalesce(' WITH (' || array_to_string(c.reloptions, ', ') || ')', '') || ';'
              || coalesce(E'\\n' || idx.lines, '') || coalesce(E'\\n' || trg.lines, '') AS definition
     FROM pg_class c
     CROSS JOIN LATERAL (
       SELECT array_agg('  ' || quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attcollation <> t.typcollation
                   THEN ' COLLATE ' || quote_ident(co.collname) ELSE '' END
           || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
           || CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
                                 WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY' ELSE '' END
           || CASE WHEN a.attgenerated <> '' THEN ' GENERATED ALWAYS AS (' || pg_get_expr(ad.adbin, ad.adrelid) || ') STORED'
                   WHEN ad.adbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid)
                   ELSE '' END
           ORDER BY a.attnum) AS lines
       FROM pg_attribute a
       JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_collation co ON co.oid = a.attcollation
       LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     ) cols
     CROSS JOIN LATERAL (
       -- Postgres 18 catalogs NOT NULL as constraints too ('n'): printed
       -- with the column, as every version knows it.
       SELECT coalesce(array_agg('  CONSTRAINT ' || quote_ident(k.conname) || ' ' || pg_get_constraintdef(k.oid)
           ORDER BY k.conname COLLATE "C"), '{}') AS lines
       FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype <> 'n'
     ) cons
     CROSS JOIN LATERAL (
       SELECT string_agg(pg_get_indexdef(i.indexrelid) || ';', E'\\n' ORDER BY ic.relname COLLATE "C") AS lines
       FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
       WHERE i.indrelid = c.oid
         AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = c.oid)
     ) idx
     CROSS JOIN LATERAL (
       SELECT string_agg(pg_get_triggerdef(tg.oid) || ';', E'\\n' ORDER BY tg.tgname COLLATE "C") AS lines
       FROM pg_trigger tg WHERE tg.tgrelid = c.oid AND NOT tg.tgisinternal
     ) trg
     WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                       WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
     ORDER BY c.relname COLLATE "C"`,
  );
  return rows.map((r) => r.definition);
}
