// The export root: in production the cold tier's bucket, mounted into the job. A missing one (the
// volume not mounted, a typo in the path) must never be created: the files would land on the
// container's own disk, vanish with it, and the partitions they hold be dropped. So the root must
// exist, and only the directories beneath it are created, one level at a time.
import { mkdirSync, statSync } from "node:fs";
import path from "node:path";
import { fsyncDirectory } from "./manifest.ts";

/**
 * Why `root` cannot take exports, or undefined when it can: it must exist and be a directory.
 * Retention checks it before the database is touched and again before each export.
 */
export function exportRootProblem(root: string): string | undefined {
  let stat: ReturnType<typeof statSync>;
  try {
    stat = statSync(root);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === "ENOENT"
      ? `${root} does not exist: mount the cold tier's bucket (or create the directory) there; a missing mount is never created`
      : `${root} cannot be read (${code ?? (error as Error).message}): check the mount and its permissions`;
  }
  return stat.isDirectory() ? undefined : `${root} is not a directory: point it at the cold tier's mount`;
}

/**
 * Creates `dir`, which lies inside `root`, and the levels between them, durably (each new level's
 * parent is fsynced, so the entry naming it survives a crash); never `root` or anything above it.
 * Throws when the root is unusable, and (ENOENT) when it disappears meanwhile: each level is made
 * on its own, never recursively, so a root lost after the check is not made again.
 */
export function makeDirectoryBelowRoot(root: string, dir: string): void {
  const problem = exportRootProblem(root);
  if (problem) throw new Error(`export root: ${problem}`);
  let level = path.resolve(root);
  for (const part of path.relative(level, dir).split(path.sep)) {
    if (part === "" || part === "..") throw new Error(`${dir} is not inside the export root ${root}`);
    level = path.join(level, part);
    try {
      mkdirSync(level);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST") continue;
      throw error;
    }
    fsyncDirectory(path.dirname(level));
  }
}
