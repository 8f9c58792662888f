/*
 * bench_support.h: what the C servers of `realfork bench` and `compare`
 * (echo_mpserv_fixed.c, echo_preforkserv.c) share: a clock, a complete
 * write, the echo loop, and the fork() latencies the parent reports on SIGUSR2 as one
 * line on stderr, "fork-us: 41 38 ..." (microseconds, since the last one).
 */
#ifndef BENCH_SUPPORT_H
#define BENCH_SUPPORT_H

#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define FORK_SAMPLES 65536
static unsigned fork_us[FORK_SAMPLES];
static unsigned fork_count;

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* One fork() that started at t0 (now_us()) has returned in the parent. */
static void note_fork(double t0)
{
	if (fork_count < FORK_SAMPLES)
		fork_us[fork_count] = (unsigned)(now_us() - t0 + 0.5);
	fork_count++;
}

/* The latencies since the last report, then the count starts again. */
static void print_fork_stats(void)
{
	unsigned n = fork_count < FORK_SAMPLES ? fork_count : FORK_SAMPLES;
	fputs("fork-us:", stderr);
	for (unsigned i = 0; i < n; i++)
		fprintf(stderr, " %u", fork_us[i]);
	fputc('\n', stderr);
	fflush(stderr);
	fork_count = 0;
}

static int write_all(int fd, const char *buf, ssize_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, (size_t)len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		buf += n;
		len -= n;
	}
	return 0;
}

/* read, then write all of it, until EOF or an error (EINTR is retried). */
static void echo_until_eof(int fd, char *buf, long buf_size)
{
	for (;;) {
		ssize_t str_len = read(fd, buf, (size_t)buf_size);
		if (str_len < 0 && errno == EINTR)
			continue;
		if (str_len <= 0 || write_all(fd, buf, str_len) < 0)
			return;
	}
}

#endif
