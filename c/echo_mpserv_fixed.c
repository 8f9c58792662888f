/*
 * echo_mpserv_fixed.c: echo_mpserv.c with each QUIRK corrected (see
 * docs/c-quirks.md). Same structure, same messages; this is the C reference
 * that realfork serve is compared with.
 *
 * Two additions for `realfork bench`/`compare`, kept out of the loop's way:
 * an optional buffer size (the book's BUF_SIZE, 30, by default), and on
 * SIGUSR2 one line on stderr with the fork() latencies seen by the parent
 * since the last SIGUSR2: "fork-us: 41 38 ..." (microseconds).
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

#include "bench_support.h"

#ifndef BUF_SIZE
#define BUF_SIZE 30
#endif

static void error_handling(const char *message)
{
	fputs(message, stderr);
	fputc('\n', stderr);
	exit(1);
}

/* Async-signal-safe: write(2) and a hand-made number, no stdio. */
static void say_removed(pid_t pid)
{
	char line[48] = "removed proc id: ";
	char digits[16];
	int n = 0, len = (int)strlen(line);
	do {
		digits[n++] = (char)('0' + pid % 10);
		pid /= 10;
	} while (pid > 0);
	while (n > 0)
		line[len++] = digits[--n];
	line[len++] = ' ';
	line[len++] = '\n';
	(void)!write(STDOUT_FILENO, line, (size_t)len);
}

/* Every ended child, however many SIGCHLDs were merged into this one. */
static void read_childproc(int sig)
{
	int saved = errno, status;
	pid_t pid;
	(void)sig;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		say_removed(pid);
	errno = saved;
}

static volatile sig_atomic_t stats_wanted;

static void want_stats(int sig)
{
	(void)sig;
	stats_wanted = 1;
}

int main(int argc, char *argv[])
{
	int serv_sock, clnt_sock, on = 1;
	struct sockaddr_in serv_adr, clnt_adr;
	struct sigaction act;
	socklen_t adr_sz;
	pid_t pid;
	char *buf;
	long buf_size = BUF_SIZE;
	double t0;

	if (argc != 2 && argc != 3) {
		printf("Usage : %s <port> [buffer_size]\n", argv[0]);
		exit(1);
	}
	if (argc == 3 && ((buf_size = atol(argv[2])) < 1 || buf_size > (64L << 20)))
		error_handling("buffer_size must be from 1 to 67108864");
	if ((buf = malloc((size_t)buf_size)) == NULL)
		error_handling("malloc() error");
	/* Line-buffered even into a pipe: fork() then copies no pending output. */
	setvbuf(stdout, NULL, _IOLBF, 0);

	act.sa_handler = read_childproc;
	sigemptyset(&act.sa_mask);
	act.sa_flags = 0;
	sigaction(SIGCHLD, &act, 0);
	act.sa_handler = want_stats;
	sigaction(SIGUSR2, &act, 0); /* no SA_RESTART: accept() returns EINTR, and the loop reports */
	signal(SIGPIPE, SIG_IGN);

	serv_sock = socket(PF_INET, SOCK_STREAM, 0);
	setsockopt(serv_sock, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	memset(&serv_adr, 0, sizeof(serv_adr));
	serv_adr.sin_family = AF_INET;
	serv_adr.sin_addr.s_addr = htonl(INADDR_ANY);
	serv_adr.sin_port = htons(atoi(argv[1]));
	if (bind(serv_sock, (struct sockaddr *)&serv_adr, sizeof(serv_adr)) == -1)
		error_handling("bind() error");
	if (listen(serv_sock, 128) == -1)
		error_handling("listen() error");

	while (1) {
		adr_sz = sizeof(clnt_adr);
		clnt_sock = accept(serv_sock, (struct sockaddr *)&clnt_adr, &adr_sz);
		if (stats_wanted) {
			stats_wanted = 0;
			print_fork_stats();
		}
		if (clnt_sock == -1)
			continue;
		puts("new client connected...");
		t0 = now_us();
		pid = fork();
		if (pid > 0)
			note_fork(t0);
		if (pid == -1) {
			close(clnt_sock);
			continue;
		}
		if (pid == 0) {
			signal(SIGCHLD, SIG_DFL);
			signal(SIGUSR2, SIG_DFL);
			close(serv_sock);
			echo_until_eof(clnt_sock, buf, buf_size);
			close(clnt_sock);
			puts("client disconnected...");
			return 0;
		}
		close(clnt_sock);
	}
}
