/*
 * echo_mpclient.c: the fork-split echo client, as the C material has it:
 * after connect(), the child writes what it reads from stdin and the parent
 * prints what comes back. `q` half-closes with shutdown(SHUT_WR).
 *
 * Kept faithful on purpose; the QUIRKs are explained in docs/c-quirks.md and
 * corrected in echo_mpclient_fixed.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#define BUF_SIZE 30
void error_handling(char *message);
void read_routine(int sock, char *buf);
void write_routine(int sock, char *buf);

int main(int argc, char *argv[])
{
	int sock;
	pid_t pid;
	char buf[BUF_SIZE];
	struct sockaddr_in serv_adr;
	if(argc!=3) {
		printf("Usage : %s <IP> <port>\n", argv[0]);
		exit(1);
	}

	sock=socket(PF_INET, SOCK_STREAM, 0);
	memset(&serv_adr, 0, sizeof(serv_adr));
	serv_adr.sin_family=AF_INET;
	serv_adr.sin_addr.s_addr=inet_addr(argv[1]);
	serv_adr.sin_port=htons(atoi(argv[2]));

	if(connect(sock, (struct sockaddr*)&serv_adr, sizeof(serv_adr))==-1)
		error_handling("connect() error!");

	/* QUIRK 7: the parent never waits for the child; whichever ends last is
	 * reparented, and the child is a zombie until the parent exits. */
	pid=fork();
	if(pid==0)
		write_routine(sock, buf);
	else
		read_routine(sock, buf);

	close(sock);
	return 0;
}

void read_routine(int sock, char *buf)
{
	while(1)
	{
		int str_len=read(sock, buf, BUF_SIZE);
		if(str_len==0)
			return;

		/* QUIRK 8: a full read (30 bytes) writes buf[30], one byte past the
		 * array; a failed read (-1) writes buf[-1] and loops forever. */
		buf[str_len]=0;
		printf("Message from server: %s", buf);
	}
}
void write_routine(int sock, char *buf)
{
	while(1)
	{
		/* QUIRK 9: at end of input fgets() returns NULL and leaves buf as it
		 * was: the last line is sent again, forever. Type q to end. */
		fgets(buf, BUF_SIZE, stdin);
		if(!strcmp(buf,"q\n") || !strcmp(buf,"Q\n"))
		{
			shutdown(sock, SHUT_WR);
			return;
		}
		write(sock, buf, strlen(buf));
	}
}
void error_handling(char *message)
{
	fputs(message, stderr);
	fputc('\n', stderr);
	exit(1);
}
