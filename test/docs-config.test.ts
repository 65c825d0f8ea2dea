/**
 * The stack-config reference (docs/configuration.md) must name every key the schema accepts, so a key added to
 * infra/config.ts cannot ship undocumented. Walks the real zod schema (through its default,
 * optional and union wrappers) and looks for each dotted key path in a reference table row.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { StackConfigSchema } from "../infra/config.js";
import { PROJECT_ROOT } from "./helpers/config.js";

type AnySchema = { _zod: { def: Record<string, any> } };

/** Unwraps default/prefault/optional/nullable/pipe wrappers down to the schema that has a shape. */
function unwrap(schema: AnySchema): AnySchema {
  let s = schema;
  for (let i = 0; i < 20; i++) {
    const def = s._zod.def;
    if (def.innerType !== undefined) s = def.innerType;
    else if (def.type === "pipe" && def.in !== undefined) s = def.in;
    else return s;
  }
  return s;
}

/** Every leaf key path of the schema, `jobs.<name>.study` for records. */
function keyPaths(schema: AnySchema, prefix: string): string[] {
  const s = unwrap(schema);
  const def = s._zod.def;
  if (def.type === "object") {
    return Object.entries(def.shape as Record<string, AnySchema>).flatMap(([key, child]) =>
      keyPaths(child, prefix === "" ? key : `${prefix}.${key}`),
    );
  }
  if (def.type === "record") {
    return keyPaths(def.valueType, `${prefix}.<name>`);
  }
  return [prefix];
}

/** The first-column keys of the reference tables, e.g. `workers.nprocs`. */
function documentedKeys(readme: string): Set<string> {
  const keys = new Set<string>();
  for (const line of readme.split("\n")) {
    const cell = /^\| ([^|]+) \|/.exec(line)?.[1];
    if (cell === undefined) continue;
    // A row may list siblings after the first key: `jobs.<name>.mode` / `window` / `batchSize`.
    let parent = "";
    for (const m of cell.matchAll(/`([A-Za-z][\w.<>]*)`/g)) {
      const key = m[1]!;
      if (key.includes(".") || parent === "") {
        keys.add(key);
        parent = key.includes(".") ? key.slice(0, key.lastIndexOf(".")) : "";
      } else {
        keys.add(`${parent}.${key}`);
      }
    }
  }
  return keys;
}

describe("docs/configuration.md: the stack-config reference", () => {
  const readme = readFileSync(join(PROJECT_ROOT, "docs", "configuration.md"), "utf8");
  const paths = keyPaths(StackConfigSchema as unknown as AnySchema, "");

  it("walks the real schema", () => {
    expect(paths).toContain("workers.memoryPerProcess");
    expect(paths).toContain("jobs.<name>.study");
    expect(paths.length).toBeGreaterThan(40);
  });

  it("documents every key the schema accepts", () => {
    const documented = documentedKeys(readme);
    const missing = paths.filter((p) => !documented.has(p));
    expect(missing).toEqual([]);
  });
});
