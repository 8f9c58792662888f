// accept, getsockname and getpeername describe an address as
// { family, port, address } (accept adds fd), in that order: the objects are
// made by the object literals src/lib/native.ts registers with the addon.
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
