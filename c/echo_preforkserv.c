/*
 * echo_preforkserv.c: the prefork echo server, a peer of `realfork serve
 * --prefork` in `realfork bench --server c-prefork` and `compare --peers`.
 * The parent makes the listening socket, forks N workers, and only waits:
 * each worker blocks in accept() on its copy of the listener (the kernel
 * wakes one per connection), echoes that client with the same buffer as
 * echo_mpserv_fixed until EOF, closes it, and accepts the next. No fork
 * happens per connection.
 *
 *   echo_preforkserv <port> [buffer_size] [workers]    (port 0: the system picks;
 *                                                        buffer 30, 4 workers by default)
 *
 * Listens on 127.0.0.1 only (a benchmark peer). A worker that dies is
 * replaced. SIGTERM or SIGINT: the workers get SIGTERM, are reaped, exit 0.
 * SIGUSR2: one line on stderr with the fork() latencies the parent measured
 * since the last SIGUSR2 ("fork-us: ..."), as echo_mpserv_fixed does.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "bench_support.h"

#define MAX_WORKERS 1024

static pid_t workers[MAX_WORKERS];
static long n_workers = 4;
static volatile sig_atomic_t stopping, stats_wanted;

/* Also signals the workers (kill() is async-signal-safe): a stop that comes
 * just before the main loop's blocking waitpid() would otherwise be noticed
 * only when some worker dies. */
static void on_stop(int sig)
{
	long i;
	(void)sig;
	stopping = 1;
	for (i = 0; i < n_workers; i++)
		if (workers[i] > 0)
			kill(workers[i], SIGTERM);
}

static void want_stats(int sig)
{
	(void)sig;
	stats_wanted = 1;
}

static void serve(int serv_sock, char *buf, long buf_size)
{
	for (;;) {
		int clnt_sock = accept(serv_sock, NULL, NULL);
		if (clnt_sock == -1)
			continue; /* EINTR, ECONNABORTED, EMFILE: the next accept */
		echo_until_eof(clnt_sock, buf, buf_size);
		close(clnt_sock);
	}
}

/* Forks worker slot i; returns 0 on success, -1 if fork failed. */
static int start_worker(long i, int serv_sock, char *buf, long buf_size)
{
	double t0 = now_us();
	sigset_t stops, old;
	pid_t pid;
	/* Blocked across fork(): the child must not run the parent's on_stop
	 * (which would swallow a SIGTERM meant for it), and the parent must have
	 * the pid in workers[] before on_stop can look there. */
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGINT);
	sigprocmask(SIG_BLOCK, &stops, &old);
	pid = fork();
	if (pid == -1) {
		sigprocmask(SIG_SETMASK, &old, 0);
		return -1;
	}
	if (pid == 0) {
		struct sigaction dfl;
		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		sigaction(SIGTERM, &dfl, 0);
		sigaction(SIGINT, &dfl, 0);
		sigaction(SIGUSR2, &dfl, 0);
		sigprocmask(SIG_SETMASK, &old, 0);
#ifdef __linux__
		/* A parent killed with SIGKILL leaves no worker holding the port. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() == 1)
			_exit(0);
#endif
		serve(serv_sock, buf, buf_size);
	}
	note_fork(t0);
	workers[i] = pid;
	sigprocmask(SIG_SETMASK, &old, 0);
	return 0;
}

int main(int argc, char *argv[])
{
	int serv_sock, on = 1, status;
	struct sockaddr_in serv_adr;
	struct sigaction act;
	long buf_size = 30, i;
	char *buf;
	pid_t pid;

	if (argc < 2 || argc > 4) {
		printf("Usage : %s <port> [buffer_size] [workers]\n", argv[0]);
		exit(1);
	}
	if (argc >= 3 && ((buf_size = atol(argv[2])) < 1 || buf_size > (64L << 20))) {
		fputs("buffer_size must be from 1 to 67108864\n", stderr);
		exit(1);
	}
	if (argc == 4 && ((n_workers = atol(argv[3])) < 1 || n_workers > MAX_WORKERS)) {
		fputs("workers must be from 1 to 1024\n", stderr);
		exit(1);
	}
	if ((buf = malloc((size_t)buf_size)) == NULL) {
		fputs("malloc() error\n", stderr);
		exit(1);
	}

	memset(&act, 0, sizeof(act));
	sigemptyset(&act.sa_mask);
	act.sa_flags = 0; /* no SA_RESTART: waitpid() returns EINTR and the loop looks */
	act.sa_handler = on_stop;
	sigaction(SIGTERM, &act, 0);
	sigaction(SIGINT, &act, 0);
	act.sa_handler = want_stats;
	sigaction(SIGUSR2, &act, 0);
	signal(SIGPIPE, SIG_IGN);

	serv_sock = socket(PF_INET, SOCK_STREAM, 0);
	setsockopt(serv_sock, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	memset(&serv_adr, 0, sizeof(serv_adr));
	serv_adr.sin_family = AF_INET;
	serv_adr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	serv_adr.sin_port = htons(atoi(argv[1]));
	if (bind(serv_sock, (struct sockaddr *)&serv_adr, sizeof(serv_adr)) == -1) {
		perror("bind() error");
		exit(1);
	}
	if (listen(serv_sock, 128) == -1) {
		perror("listen() error");
		exit(1);
	}

	while (!stopping) {
		/* Fill the empty slots: all of them at start, then the one that died. */
		for (i = 0; i < n_workers && !stopping; i++) {
			if (workers[i] == 0 && start_worker(i, serv_sock, buf, buf_size) == -1) {
				perror("fork() error");
				sleep(1); /* no spin while the system is out of processes */
				break;
			}
		}
		pid = waitpid(-1, &status, 0);
		if (stats_wanted) {
			stats_wanted = 0;
			print_fork_stats();
		}
		for (i = 0; pid > 0 && i < n_workers; i++)
			if (workers[i] == pid)
				workers[i] = 0;
	}
	close(serv_sock);
	for (i = 0; i < n_workers; i++)
		if (workers[i] > 0)
			kill(workers[i], SIGTERM);
	for (i = 0; i < n_workers; i++)
		if (workers[i] > 0)
			while (waitpid(workers[i], &status, 0) == -1 && errno == EINTR)
				;
	return 0;
}
