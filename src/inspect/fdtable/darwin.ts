// macOS: descriptor tables from libproc (libproc.ts reads its structs), the
// process tree from ps. libproc does not say which descriptors share an open
// file description.
import { execFileSync } from "node:child_process";
import { SyscallError } from "../../lib/errors.js";
import { type Libproc, listFds } from "./libproc.js";
import type { Descriptor, DescriptorType, ProcessEntry } from "./types.js";

export function parentMap(): Map<number, { ppid: number; command: string }> {
  const map = new Map<number, { ppid: number; command: string }>();
  const text = execFileSync("ps", ["-A", "-o", "pid=,ppid=,comm="], { encoding: "utf8" });
  for (const line of text.split("\n")) {
    const m = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(line);
    if (m) map.set(Number(m[1]), { ppid: Number(m[2]), command: (m[3] ?? "").split("/").pop() ?? "" });
  }
  return map;
}

/** `lib`: the addon's libproc calls (a test gives recorded ones). */
export function readProcess(pid: number, ppid: number, command: string, lib?: Partial<Libproc>): ProcessEntry {
  const entry: ProcessEntry = { pid, ppid, command, descriptors: [] };
  const list = listFds(pid, lib);
  if (list === undefined) {
    entry.error = "libproc is not available in this build";
    return entry;
  }
  if (typeof list === "number") {
    const err = new SyscallError(list, "proc_pidinfo");
    entry.error =
      err.code === "EPERM" || err.code === "EACCES"
        ? `permission denied: the descriptors of pid ${pid} can be read only by its user or root`
        : err.summary;
    return entry;
  }
  for (const f of list) {
    const type: DescriptorType = f.type === "socket" ? "socket" : f.type;
    const d: Descriptor = {
      fd: f.fd,
      type,
      target: f.path ?? (f.id !== undefined ? `${f.type}:[${f.id}]` : f.type),
      inode: f.id ?? null,
    };
    if (f.type === "tcp") Object.assign(d, { local: f.local, remote: f.remote ?? null, state: f.state });
    entry.descriptors.push(d);
  }
  entry.descriptors.sort((a, b) => a.fd - b.fd);
  return entry;
}
