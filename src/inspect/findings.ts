/**
 * What `realfork check` reports (the schema of `check --json`), and what the
 * descriptor pictures (`fds --svg`/`--dot`) draw so that it stands out.
 */

export type FindingKind =
  | "listener-in-child"
  | "connection-in-parent"
  | "close-wait"
  | "zombie"
  | "descriptor-growth"
  | "connection-in-sibling"
  | "listener-inherited"
  | "orphaned-listener";

/** One descriptor, process or socket that shows the problem. */
export interface Evidence {
  pid: number;
  /** The descriptor, where the evidence is one. */
  fd?: number;
  /** The socket's inode (Linux) or kernel address (macOS). */
  inode?: number;
  state?: string;
  local?: string;
  remote?: string | null;
  /** What the kernel calls a descriptor that is not a TCP socket ("pipe:[99]", a path). */
  target?: string;
}

export interface Finding {
  kind: FindingKind;
  /** One line: what is wrong, in the book's terms. */
  message: string;
  /** One line: the fix (e.g. "close(serv_sock) in the child after fork()"). */
  fix: string;
  evidence: Evidence[];
}
