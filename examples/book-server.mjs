// echo_mpserv.c, step by step, with the raw calls; the C lines in comments.
// One difference, and why: the C blocks in accept(); a Node process that
// blocks never runs its SIGCHLD handler, so zombies would wait for the next
// client. Here the event loop says when accept() has something (FdWatcher).
// Run: node examples/book-server.mjs [port]
import {
  _exit,
  accept,
  bind,
  close,
  closeInherited,
  constants,
  ensureNodeFlags,
  FdWatcher,
  fork,
  getsockname,
  listen,
  Reaper,
  read,
  setsockopt,
  socket,
  writeAll,
} from "realfork";

ensureNodeFlags();
const BUF_SIZE = 30;
const say = (line) => writeAll(1, `${line}\n`);

// act.sa_handler = read_childproc; sigaction(SIGCHLD, &act, 0);
const reaper = new Reaper();
reaper.on("exit", (status) => say(`removed proc id: ${status.pid}`));

// serv_sock = socket(PF_INET, SOCK_STREAM, 0); bind(...); listen(serv_sock, 5);
const servSock = socket(constants.AF_INET, constants.SOCK_STREAM);
setsockopt(servSock, constants.SOL_SOCKET, constants.SO_REUSEADDR, 1);
bind(servSock, "127.0.0.1", Number(process.argv[2] ?? 0));
listen(servSock, 5);

// while (1) { clnt_sock = accept(serv_sock, ...); ... }
const watcher = new FdWatcher(servSock, () => {
  for (;;) {
    let clnt;
    try {
      clnt = accept(servSock);
    } catch (err) {
      if (err.code === "EAGAIN" || err.code === "EWOULDBLOCK") return; // the backlog is empty
      throw err;
    }
    say("new client connected...");
    const pid = fork(); // pid = fork();
    if (pid === 0) {
      // if (pid == 0) { close(serv_sock); while ((str_len = read(...)) != 0) write(...); close(clnt_sock); return 0; }
      close(servSock);
      closeInherited([clnt.fd]); // what Node's runtime left open (the C child has none of it)
      const buf = Buffer.alloc(BUF_SIZE);
      for (;;) {
        const n = read(clnt.fd, buf); // while ((str_len = read(clnt_sock, buf, BUF_SIZE)) != 0)
        if (n === 0) break;
        writeAll(clnt.fd, buf.subarray(0, n)); // write(clnt_sock, buf, str_len), until all is sent
      }
      close(clnt.fd);
      say("client disconnected...");
      _exit(0);
    }
    reaper.track(pid);
    close(clnt.fd); // else close(clnt_sock);
  }
});
watcher.start();
say(`book-server: listening on 127.0.0.1:${getsockname(servSock).port}, pid ${process.pid}`);

// close(serv_sock), on SIGTERM or SIGINT; the children finish their clients,
// and the parent stays (the interval keeps the loop alive) to reap them.
const stop = () => {
  watcher.close();
  close(servSock);
  const keepAlive = setInterval(() => {}, 2 ** 30);
  const end = () => {
    if (reaper.live > 0) return;
    clearInterval(keepAlive);
    reaper.dispose();
    say("stopped");
  };
  reaper.on("exit", end);
  end();
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
