/*
 * echo_mpclient_fixed.c: echo_mpclient.c with each QUIRK corrected (see
 * docs/c-quirks.md): room for the terminating NUL, end of input half-closes
 * like q does, read errors end the reader, and the parent waits for its child.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define BUF_SIZE 30

static void error_handling(const char *message)
{
	fputs(message, stderr);
	fputc('\n', stderr);
	exit(1);
}

static void read_routine(int sock, char *buf)
{
	for (;;) {
		ssize_t str_len = read(sock, buf, BUF_SIZE);
		if (str_len < 0 && errno == EINTR)
			continue;
		if (str_len <= 0)
			return;
		buf[str_len] = 0;
		printf("Message from server: %s", buf);
		fflush(stdout);
	}
}

static void write_routine(int sock, char *buf)
{
	while (fgets(buf, BUF_SIZE, stdin) != NULL) {
		if (!strcmp(buf, "q\n") || !strcmp(buf, "Q\n"))
			break;
		if (write(sock, buf, strlen(buf)) < 0)
			return;
	}
	shutdown(sock, SHUT_WR);
}

int main(int argc, char *argv[])
{
	int sock;
	pid_t pid;
	char buf[BUF_SIZE + 1];
	struct sockaddr_in serv_adr;

	if (argc != 3) {
		printf("Usage : %s <IP> <port>\n", argv[0]);
		exit(1);
	}
	sock = socket(PF_INET, SOCK_STREAM, 0);
	memset(&serv_adr, 0, sizeof(serv_adr));
	serv_adr.sin_family = AF_INET;
	serv_adr.sin_addr.s_addr = inet_addr(argv[1]);
	serv_adr.sin_port = htons(atoi(argv[2]));
	if (connect(sock, (struct sockaddr *)&serv_adr, sizeof(serv_adr)) == -1)
		error_handling("connect() error!");

	pid = fork();
	if (pid == 0) {
		write_routine(sock, buf);
		close(sock);
		return 0;
	}
	read_routine(sock, buf);
	close(sock);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return 0;
}
