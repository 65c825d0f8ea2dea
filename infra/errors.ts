/**
 * Config problems and the error that carries them.
 *
 * Kept in its own module so that the pure domain modules (`memory.ts`, `azure/vm-sizes.ts`) can
 * report problems without importing `config.ts` (which imports them).
 */

/** One thing wrong with the stack config. */
export interface Problem {
  /** Key path without the `dask-workspace:` prefix, e.g. `workers.memoryPerProcess`. */
  path: string;
  /** What is wrong, with the numbers involved and how to fix it. */
  message: string;
}

/** One line per problem: `path: message`. */
export function formatProblems(problems: readonly Problem[]): string {
  return problems.map((p) => (p.path === "" ? p.message : `${p.path}: ${p.message}`)).join("\n");
}

/** A config that cannot be used; `message` lists every problem, one per line. */
export class ConfigError extends Error {
  readonly problems: Problem[];

  constructor(problems: Problem[]) {
    super(formatProblems(problems));
    this.name = "ConfigError";
    this.problems = problems;
  }
}
