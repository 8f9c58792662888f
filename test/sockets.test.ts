// accept, getsockname and getpeername describe an address as
// { family, port, address } (accept adds fd), in that order: the objects are
// made by the object literals src/lib/native.ts registers with the addon.
import { spawnSync } from "node:child_process";
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import * as rf from "../src/index.js";

const open: number[] = [];
const clients: Socket[] = [];
afterEach(() => {
  for (const fd of open.splice(0)) rf.close(fd);
  for (const s of clients.splice(0)) s.destroy();
});

function listening(domain: number, host: string): { fd: number; port: number } {
  const fd = rf.socket(domain, rf.constants.SOCK_STREAM);
  open.push(fd);
  rf.bind(fd, host, 0);
  rf.listen(fd, 8);
  return { fd, port: rf.getsockname(fd).port };
}

async function connected(host: string, port: number): Promise<Socket> {
  const s = connect(port, host);
  clients.push(s);
  await new Promise((resolve, reject) => s.once("connect", resolve).once("error", reject));
  return s;
}

describe.each([
  ["IPv4", "AF_INET", "127.0.0.1"],
  ["IPv6", "AF_INET6", "::1"],
] as const)("addresses, %s", (family, domain, host) => {
  it("accept, getsockname and getpeername: the same keys in the same order, the kernel's values", async () => {
    const listener = listening(rf.constants[domain], host);
    expect(rf.getsockname(listener.fd)).toEqual({ family, port: listener.port, address: host });
    const client = await connected(host, listener.port);
    // A second connection: nothing of the first one's object is reused.
    const other = await connected(host, listener.port);
    const first = rf.accept(listener.fd);
    const second = rf.accept(listener.fd);
    open.push(first.fd, second.fd);
    expect(Object.keys(first)).toEqual(["family", "port", "address", "fd"]);
    expect(first).toEqual({ family, port: client.localPort, address: host, fd: first.fd });
    expect(second).toEqual({ family, port: other.localPort, address: host, fd: second.fd });
    expect(second.fd).not.toBe(first.fd);
    const peer = rf.getpeername(first.fd);
    expect(Object.keys(peer)).toEqual(["family", "port", "address"]);
    expect(peer).toEqual({ family, port: client.localPort, address: host });
    expect(rf.getsockname(first.fd)).toEqual({ family, port: listener.port, address: host });
  });
});

it("an AF_UNIX socket: family unix, port 0, no address", () => {
  const [a, b] = rf.socketpair(rf.constants.AF_UNIX, rf.constants.SOCK_STREAM);
  open.push(a, b);
  expect(rf.getsockname(a)).toEqual({ family: "unix", port: 0, address: "" });
});

describe("setAddressFactories", () => {
  it("takes two functions, and refuses anything else", async () => {
    const { native } = await import("../src/lib/native.js");
    expect(() => native.setAddressFactories(null as never, null as never)).toThrow(
      "setAddressFactories(address, accepted) takes two functions",
    );
  });
});

// A program the process spawns inherits every descriptor not marked
// close-on-exec (libuv's spawn closes nothing): the listener of a server that
// runs `sleep` would be held by sleep. readlink runs in the spawned process
// and reads its own descriptor table.
describe.runIf(process.platform === "linux")("close-on-exec", () => {
  const inherited = (fd: number) => spawnSync("readlink", [`/proc/self/fd/${fd}`], { encoding: "utf8" }).stdout.trim();

  it("socket(), socketpair() and accept() make descriptors a spawned program does not inherit", async () => {
    const listener = listening(rf.constants.AF_INET, "127.0.0.1");
    await connected("127.0.0.1", listener.port);
    const conn = rf.accept(listener.fd).fd;
    const pair = rf.socketpair(rf.constants.AF_UNIX, rf.constants.SOCK_STREAM);
    open.push(conn, ...pair);
    for (const fd of [listener.fd, conn, ...pair]) expect(inherited(fd), `fd ${fd}`).toBe("");
  });

  it("setCloseOnExec(fd, false) hands one to a spawned program on purpose, and says what it was", () => {
    const listener = listening(rf.constants.AF_INET, "127.0.0.1");
    expect(rf.setCloseOnExec(listener.fd, false)).toBe(true);
    expect(inherited(listener.fd)).toMatch(/^socket:\[\d+\]$/);
    expect(rf.setCloseOnExec(listener.fd, true)).toBe(false);
    expect(inherited(listener.fd)).toBe("");
    expect(() => rf.setCloseOnExec(listener.fd, 1 as unknown as boolean)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG_TYPE" }),
    );
  });
});

describe("accept() when its address object cannot be made", () => {
  it("closes the accepted descriptor instead of leaking it", async () => {
    const { native } = await import("../src/lib/native.js");
    const listener = listening(rf.constants.AF_INET, "127.0.0.1");
    const client = await connected("127.0.0.1", listener.port);
    const before = rf.openDescriptors();
    native.setAddressFactories(
      (family, port, address) => ({ family, port, address }),
      () => {
        throw new Error("no object");
      },
    );
    try {
      expect(() => rf.accept(listener.fd)).toThrow("no object");
    } finally {
      native.setAddressFactories(
        (family, port, address) => ({ family, port, address }),
        (family, port, address, fd) => ({ family, port, address, fd }),
      );
    }
    expect(rf.openDescriptors()).toEqual(before);
    // The connection was closed, not left half-owned: the client sees EOF.
    await new Promise((resolve) => client.once("end", resolve).resume());
  });
});
