// Step: create the new partitioned parent, unused until the swap, with everything the table has
// (constraints, indexes under temporary names, foreign keys, comment, owner, grants) and its
// partitions from the boundary on.

import { quoteIdentifier, quoteIdentifiers, quoteLiteral } from "../db/quote.ts";
import { DEFAULT_PARTITION_MARKER } from "../partitions/naming.ts";
import type { ConversionDesign, ParentIndex } from "./design.ts";
import { CONVERT_BOUND_CONSTRAINT } from "./names.ts";
import { boundText, relationText, type Step } from "./step.ts";

export function parentStep(d: ConversionDesign): Step {
  const t = relationText(d, d.table);
  const p = relationText(d, d.names.parent);
  const sqls: string[] = [
    `CREATE TABLE ${p} (LIKE ${t} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMMENTS INCLUDING STATISTICS) PARTITION BY RANGE (${quoteIdentifier(d.timeColumn)})`,
    // LIKE copied our CHECK too; the parent's partitions have their own bounds.
    `ALTER TABLE ${p} DROP CONSTRAINT IF EXISTS ${quoteIdentifier(CONVERT_BOUND_CONSTRAINT)}`,
  ];
  for (const i of d.parentIndexes) sqls.push(parentIndexStatement(p, i));
  for (const fk of d.foreignKeys)
    sqls.push(`ALTER TABLE ${p} ADD CONSTRAINT ${quoteIdentifier(fk.name)} ${fk.definition}`);
  if (d.comment !== null) sqls.push(`COMMENT ON TABLE ${p} IS ${quoteLiteral(d.comment)}`);
  sqls.push(`ALTER TABLE ${p} OWNER TO ${quoteIdentifier(d.owner)}`);
  // The grantee is as the catalog read rendered it: quote_ident'ed, or PUBLIC.
  for (const g of d.grants)
    sqls.push(`GRANT ${g.privilege} ON ${p} TO ${g.grantee}${g.grantable ? " WITH GRANT OPTION" : ""}`);
  sqls.push(...partitionStatements(d, p));
  return {
    id: "parent",
    title: `create the partitioned parent ${d.names.parent} (unused until the swap) with ${d.partitions.length} partitions from ${d.boundary}`,
    locks:
      "nothing the application uses; foreign keys take SHARE ROW EXCLUSIVE on the referenced tables for a moment, under lock_timeout",
    kind: "transaction",
    statements: sqls.map((sql) => ({ sql })),
  };
}

/** The parent's copy of one of the table's keys or indexes, under its temporary name. */
function parentIndexStatement(parent: string, i: ParentIndex): string {
  const name = quoteIdentifier(i.temporary);
  if (i.constraintDef) return `ALTER TABLE ${parent} ADD CONSTRAINT ${name} ${i.constraintDef}`;
  if (i.constraint === "p")
    return `ALTER TABLE ${parent} ADD CONSTRAINT ${name} PRIMARY KEY (${quoteIdentifiers(i.columns)})`;
  if (i.constraint === "u")
    return `ALTER TABLE ${parent} ADD CONSTRAINT ${name} UNIQUE (${quoteIdentifiers(i.columns)})`;
  return `CREATE ${i.unique ? "UNIQUE " : ""}INDEX ${name} ON ${parent}${i.body}`;
}

function partitionStatements(d: ConversionDesign, parent: string): string[] {
  const sqls = d.partitions.map(
    (part) =>
      `CREATE TABLE ${relationText(d, part.name)} PARTITION OF ${parent} FOR VALUES FROM (${boundText(d, part.from)}) TO (${boundText(d, part.to)})`,
  );
  if (d.defaultPartition) {
    const def = relationText(d, d.defaultPartition);
    sqls.push(`CREATE TABLE ${def} PARTITION OF ${parent} DEFAULT`);
    sqls.push(`COMMENT ON TABLE ${def} IS ${quoteLiteral(DEFAULT_PARTITION_MARKER)}`);
  }
  return sqls;
}
