/*
 * forkloop.c: the floor under any fork-per-connection server, for a small C
 * process. N times: fork(), the child calls _exit(0) at once, the parent
 * waits for it. `realfork bench --workload fork` runs the same loop in Node.
 *
 *   forkloop N    prints {"iterations":N,"seconds":..,"per_s":..,"fork_us":{"p50":..,"p99":..}}
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char *argv[])
{
	long n = argc == 2 ? atol(argv[1]) : 0;
	if (n < 1 || n > 10000000) {
		fputs("usage: forkloop N (1 to 10000000)\n", stderr);
		return 2;
	}
	double *lat = malloc((size_t)n * sizeof(double));
	double start = now_us();
	for (long i = 0; i < n; i++) {
		double t0 = now_us();
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0)
			_exit(0);
		lat[i] = now_us() - t0;
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	double secs = (now_us() - start) / 1e6;
	qsort(lat, (size_t)n, sizeof(double), cmp);
	printf("{\"iterations\":%ld,\"seconds\":%.6f,\"per_s\":%.1f,\"fork_us\":{\"p50\":%.1f,\"p99\":%.1f}}\n", n,
	       secs, (double)n / secs, lat[(long)(0.5 * (double)(n - 1) + 0.5)], lat[(long)(0.99 * (double)(n - 1) + 0.5)]);
	free(lat);
	return 0;
}
