export { type ClientOptions, type ClientResult, runClient } from "./lib/client.js";
export { closeInherited, openDescriptors } from "./lib/descriptors.js";
export { InvalidArgTypeError, OutOfRangeError, SyscallError } from "./lib/errors.js";
export { disableLoopRegistry, enableLoopRegistry, isLoopChild, LoopForkError } from "./lib/event-loop-child.js";
export {
  _exit,
  CHILD_ESCAPED_STATUS,
  type ForkOptions,
  ForkRefusedError,
  ForkSafetyError,
  fork,
  isForkedChild,
  trimBeforeForking,
  v8SingleThreaded,
} from "./lib/fork.js";
export { writeAll } from "./lib/output.js";
export * from "./lib/posix.js";
export { Reaper, type ReaperEvents } from "./lib/reaper.js";
export { ensureNodeFlags, missingNodeFlags, type NodeFlagsOptions, ReexecError } from "./lib/reexec.js";
export { formatAddress } from "./lib/server/connection.js";
export { ForkingServer } from "./lib/server/forking-server.js";
export type {
  ChildRole,
  Connection,
  ConnectionHandler,
  ForkingServerEvents,
  ForkingServerOptions,
  ServerAddress,
  ServerStep,
} from "./lib/server/types.js";
export { FdWatcher, type Readiness, type WatchCallback } from "./lib/watcher.js";
