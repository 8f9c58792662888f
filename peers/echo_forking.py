#!/usr/bin/env python3
"""Echo server on Python's socketserver.ForkingTCPServer: a peer of realfork
serve in `realfork bench --server python` and `realfork compare --peers`.

    echo_forking.py <port> [buffer_size]    (port 0: the system picks; buffer 30)

The standard library's fork-per-connection server as it comes, with the same
backlog (128) and read size as c/echo_mpserv_fixed. Listens on 127.0.0.1 only
(a benchmark peer). SIGTERM or SIGINT: stop accepting, wait for the children,
exit 0.
"""
import signal
import socketserver
import sys


def main() -> int:
    if not 2 <= len(sys.argv) <= 3:
        print(f"Usage : {sys.argv[0]} <port> [buffer_size]")
        return 1
    port = int(sys.argv[1])
    buf_size = int(sys.argv[2]) if len(sys.argv) == 3 else 30
    if not 1 <= buf_size <= 64 << 20:
        print("buffer_size must be from 1 to 67108864", file=sys.stderr)
        return 1

    class Echo(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            while data := self.request.recv(buf_size):
                self.request.sendall(data)

    class Server(socketserver.ForkingTCPServer):
        allow_reuse_address = True
        request_queue_size = 128  # listen() backlog; the module's default is 5

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)  # in a child: ForkingMixIn's finally still calls os._exit

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with Server(("127.0.0.1", port), Echo) as server:
        try:
            server.serve_forever()
        except SystemExit:
            pass  # leaving the with block waits for the children (block_on_close)
    return 0


if __name__ == "__main__":
    sys.exit(main())
