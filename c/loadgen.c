/*
 * loadgen.c: the load generator behind `realfork bench` and `compare`.
 * Multi-threaded so that it is never the bottleneck; every echoed byte is
 * checked against what was sent. Prints one JSON object on stdout.
 *
 *   loadgen short  HOST PORT COUNT CONCURRENCY SIZE TIMEOUT_S
 *     COUNT connections, CONCURRENCY at a time: connect, send SIZE bytes,
 *     read them back, close. Reports connections/s and latency percentiles.
 *   loadgen stream HOST PORT BYTES CHUNK TIMEOUT_S
 *     One connection: a writer thread sends BYTES in CHUNK-byte writes while
 *     a reader thread reads them back; then a half-close and EOF. MiB/s.
 *
 * Exit 0 when every byte came back, 1 when any connection failed or any
 * byte differed (the JSON says which), 2 on wrong usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_storage target;
static socklen_t target_len;
static int timeout_s;
static int spread_sources; /* see pick_source() */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The byte at offset i of stream `id`: differs between connections, so a
 * byte echoed on the wrong connection is caught as well as a wrong one. */
static inline unsigned char pattern(uint64_t id, uint64_t i)
{
	return (unsigned char)((i * 31 + id * 131 + (i >> 8)) & 0xff);
}

static int resolve(const char *host, const char *port)
{
	struct addrinfo hints = {0}, *res;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -1;
	memcpy(&target, res->ai_addr, res->ai_addrlen);
	target_len = res->ai_addrlen;
	spread_sources = target.ss_family == AF_INET &&
			 ((struct sockaddr_in *)&target)->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
	freeaddrinfo(res);
	return 0;
}

/*
 * Every short connection leaves a TIME_WAIT socket on this side (the client
 * closes first). Tens of thousands of them fill the ephemeral port range and
 * make connect() slower and slower, which would bias whichever server is
 * measured last. When the target is 127.0.0.1, connections are spread over
 * source addresses 127.0.0.2-127.0.0.251 (loopback, this machine only), so
 * the 4-tuples never run short.
 */
static void pick_source(int fd, long id)
{
#ifdef IP_BIND_ADDRESS_NO_PORT
	int on = 1;
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof(on));
#endif
	struct sockaddr_in src = {.sin_family = AF_INET};
	src.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(id % 250));
	bind(fd, (struct sockaddr *)&src, sizeof(src)); /* on failure the kernel picks, as usual */
}

#ifndef SOCK_CLOEXEC
#define SOCK_CLOEXEC 0 /* macOS: no exec happens here anyway */
#endif

static int open_conn(int *err, long id)
{
	struct timeval tv = {.tv_sec = timeout_s, .tv_usec = 0};
	int fd = socket(target.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err = errno;
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (spread_sources)
		pick_source(fd, id);
	while (connect(fd, (struct sockaddr *)&target, target_len) < 0) {
		if (errno == EINTR)
			continue;
		*err = errno;
		close(fd);
		return -1;
	}
	return fd;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* ---- short connections ---- */

struct short_state {
	long count, size;
	atomic_long next;
	atomic_long ok, failed, mismatched;
	atomic_int first_errno;
	double *latency_us; /* one slot per connection */
};

static void note_error(struct short_state *st, int err)
{
	int zero = 0;
	atomic_compare_exchange_strong(&st->first_errno, &zero, err);
	atomic_fetch_add(&st->failed, 1);
}

static void *short_worker(void *arg)
{
	struct short_state *st = arg;
	unsigned char *out = malloc((size_t)st->size), *in = malloc((size_t)st->size);
	for (;;) {
		long id = atomic_fetch_add(&st->next, 1);
		if (id >= st->count)
			break;
		for (long i = 0; i < st->size; i++)
			out[i] = pattern((uint64_t)id, (uint64_t)i);
		double t0 = now_s();
		int err = 0;
		int fd = open_conn(&err, id);
		if (fd < 0) {
			note_error(st, err);
			continue;
		}
		if (write_all(fd, out, (size_t)st->size) < 0) {
			note_error(st, errno);
			close(fd);
			continue;
		}
		long got = 0;
		while (got < st->size) {
			ssize_t r = read(fd, in + got, (size_t)(st->size - got));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				err = r == 0 ? ECONNRESET : errno;
				break;
			}
			got += r;
		}
		close(fd);
		if (got < st->size) {
			note_error(st, err);
			continue;
		}
		if (memcmp(in, out, (size_t)st->size) != 0) {
			atomic_fetch_add(&st->mismatched, 1);
			continue;
		}
		st->latency_us[id] = (now_s() - t0) * 1e6;
		atomic_fetch_add(&st->ok, 1);
	}
	free(out);
	free(in);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double percentile(const double *sorted, long n, double p)
{
	if (n == 0)
		return 0;
	long i = (long)(p * (double)(n - 1) + 0.5);
	return sorted[i];
}

static int run_short(long count, int concurrency, long size)
{
	struct short_state st = {.count = count, .size = size};
	st.latency_us = calloc((size_t)count, sizeof(double));
	pthread_t *threads = calloc((size_t)concurrency, sizeof(pthread_t));
	double t0 = now_s();
	for (int i = 0; i < concurrency; i++)
		pthread_create(&threads[i], NULL, short_worker, &st);
	for (int i = 0; i < concurrency; i++)
		pthread_join(threads[i], NULL);
	double secs = now_s() - t0;
	long ok = atomic_load(&st.ok), n = 0;
	for (long i = 0; i < count; i++)
		if (st.latency_us[i] > 0)
			st.latency_us[n++] = st.latency_us[i];
	qsort(st.latency_us, (size_t)n, sizeof(double), cmp_double);
	int e = atomic_load(&st.first_errno);
	printf("{\"workload\":\"short\",\"connections\":%ld,\"concurrency\":%d,\"size\":%ld,"
	       "\"ok\":%ld,\"failed\":%ld,\"mismatched\":%ld,\"first_error\":%s%s%s,"
	       "\"seconds\":%.6f,\"conns_per_s\":%.1f,\"latency_us\":{\"p50\":%.1f,\"p99\":%.1f}}\n",
	       count, concurrency, size, ok, atomic_load(&st.failed), atomic_load(&st.mismatched),
	       e ? "\"" : "", e ? strerror(e) : "null", e ? "\"" : "", secs, (double)ok / secs,
	       percentile(st.latency_us, n, 0.5), percentile(st.latency_us, n, 0.99));
	free(st.latency_us);
	free(threads);
	return ok == count ? 0 : 1;
}

/* ---- one long stream ---- */

struct stream_state {
	int fd;
	uint64_t bytes;
	size_t chunk;
	int write_errno;
};

/* The stream repeats with a prime period, so one table serves for writing
 * (no copy) and for checking (memcmp) at any offset. */
#define PERIOD 65521
static unsigned char *table;

static void *stream_writer(void *arg)
{
	struct stream_state *st = arg;
	uint64_t sent = 0;
	while (sent < st->bytes) {
		size_t n = st->bytes - sent < st->chunk ? (size_t)(st->bytes - sent) : st->chunk;
		if (write_all(st->fd, table + sent % PERIOD, n) < 0) {
			st->write_errno = errno;
			break;
		}
		sent += n;
	}
	shutdown(st->fd, SHUT_WR);
	return NULL;
}

static int run_stream(uint64_t bytes, size_t chunk)
{
	int err = 0;
	double t0 = now_s();
	int fd = open_conn(&err, 0);
	if (fd < 0) {
		printf("{\"workload\":\"stream\",\"bytes\":%llu,\"received\":0,\"mismatched_at\":null,"
		       "\"first_error\":\"%s\",\"seconds\":0,\"mib_per_s\":0}\n",
		       (unsigned long long)bytes, strerror(err));
		return 1;
	}
	size_t span = PERIOD + (chunk > (1 << 16) ? chunk : (1 << 16));
	table = malloc(span);
	for (size_t i = 0; i < span; i++)
		table[i] = pattern(0, i % PERIOD);
	struct stream_state st = {.fd = fd, .bytes = bytes, .chunk = chunk};
	pthread_t writer;
	pthread_create(&writer, NULL, stream_writer, &st);
	unsigned char *buf = malloc(1 << 16);
	uint64_t got = 0;
	long long bad_at = -1;
	int read_errno = 0;
	for (;;) {
		ssize_t r = read(fd, buf, 1 << 16);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			read_errno = errno;
		if (r <= 0)
			break;
		if (bad_at < 0 && memcmp(buf, table + got % PERIOD, (size_t)r) != 0)
			for (ssize_t i = 0; i < r; i++)
				if (buf[i] != table[(got + (uint64_t)i) % PERIOD]) {
					bad_at = (long long)(got + (uint64_t)i);
					break;
				}
		got += (uint64_t)r;
	}
	double secs = now_s() - t0;
	pthread_join(writer, NULL);
	close(fd);
	free(buf);
	free(table);
	int e = st.write_errno ? st.write_errno : read_errno;
	char bad[32] = "null";
	if (bad_at >= 0)
		snprintf(bad, sizeof(bad), "%lld", bad_at);
	printf("{\"workload\":\"stream\",\"bytes\":%llu,\"chunk\":%zu,\"received\":%llu,\"mismatched_at\":%s,"
	       "\"first_error\":%s%s%s,\"seconds\":%.6f,\"mib_per_s\":%.1f}\n",
	       (unsigned long long)bytes, chunk, (unsigned long long)got, bad, e ? "\"" : "",
	       e ? strerror(e) : "null", e ? "\"" : "", secs, (double)got / 1048576.0 / secs);
	return got == bytes && bad_at < 0 && e == 0 ? 0 : 1;
}

static long arg_long(const char *s, long min, long max)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *s == '\0' || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "loadgen: '%s' is not a number from %ld to %ld\n", s, min, max);
		exit(2);
	}
	return v;
}

int main(int argc, char *argv[])
{
	const char *usage = "usage: loadgen short HOST PORT COUNT CONCURRENCY SIZE TIMEOUT_S\n"
			    "       loadgen stream HOST PORT BYTES CHUNK TIMEOUT_S\n";
	if (argc < 2 || (strcmp(argv[1], "short") == 0 && argc != 8) ||
	    (strcmp(argv[1], "stream") == 0 && argc != 7) ||
	    (strcmp(argv[1], "short") != 0 && strcmp(argv[1], "stream") != 0)) {
		fputs(usage, stderr);
		return 2;
	}
	/* A server that goes away mid-run is an error to count, not a reason to die. */
	signal(SIGPIPE, SIG_IGN);
	arg_long(argv[3], 1, 65535);
	if (resolve(argv[2], argv[3]) < 0) {
		fprintf(stderr, "loadgen: '%s' is not a numeric address\n", argv[2]);
		return 2;
	}
	if (strcmp(argv[1], "short") == 0) {
		long count = arg_long(argv[4], 1, 100000000);
		int conc = (int)arg_long(argv[5], 1, 4096);
		long size = arg_long(argv[6], 1, 64 << 20);
		timeout_s = (int)arg_long(argv[7], 1, 3600);
		return run_short(count, conc, size);
	}
	uint64_t bytes = (uint64_t)arg_long(argv[4], 1, 1L << 40);
	size_t chunk = (size_t)arg_long(argv[5], 1, 64 << 20);
	timeout_s = (int)arg_long(argv[6], 1, 3600);
	return run_stream(bytes, chunk);
}
