/*
 * echo_mpserv.c: the accept-then-fork echo server, as the C material has it.
 *
 * Kept faithful on purpose, quirks included; each is a lesson, marked QUIRK
 * below and explained in docs/c-quirks.md. echo_mpserv_fixed.c is the same
 * program with every quirk corrected.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <signal.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#define BUF_SIZE 30
void error_handling(char *message);
void read_childproc(int sig);

int main(int argc, char *argv[])
{
	int serv_sock, clnt_sock;
	struct sockaddr_in serv_adr, clnt_adr;

	pid_t pid;
	struct sigaction act;
	socklen_t adr_sz;
	int str_len, state;
	char buf[BUF_SIZE];
	if(argc!=2) {
		printf("Usage : %s <port>\n", argv[0]);
		exit(1);
	}

	act.sa_handler=read_childproc;
	sigemptyset(&act.sa_mask);
	/* QUIRK 1: no SA_RESTART, so SIGCHLD interrupts accept() (-1, EINTR):
	 * the `continue` below is what keeps the server alive. */
	act.sa_flags=0;
	state=sigaction(SIGCHLD, &act, 0);
	serv_sock=socket(PF_INET, SOCK_STREAM, 0);
	/* QUIRK 2: no SO_REUSEADDR: restarting while old connections sit in
	 * TIME_WAIT fails with "bind() error". */
	memset(&serv_adr, 0, sizeof(serv_adr));
	serv_adr.sin_family=AF_INET;
	serv_adr.sin_addr.s_addr=htonl(INADDR_ANY);
	serv_adr.sin_port=htons(atoi(argv[1]));

	if(bind(serv_sock, (struct sockaddr*) &serv_adr, sizeof(serv_adr))==-1)
		error_handling("bind() error");
	if(listen(serv_sock, 5)==-1)
		error_handling("listen() error");

	while(1)
	{
		adr_sz=sizeof(clnt_adr);
		clnt_sock=accept(serv_sock, (struct sockaddr*)&clnt_adr, &adr_sz);
		if(clnt_sock==-1)
			continue;
		else
			puts("new client connected...");
		/* QUIRK 3: when stdout is a pipe or file, stdio buffers it fully, and
		 * fork() copies the unflushed buffer: the child prints the parent's
		 * pending lines again when it exits. Run under a terminal, or with
		 * `stdbuf -oL`, to see each line once. */
		pid=fork();
		if(pid==-1)
		{
			close(clnt_sock);
			continue;
		}
		if(pid==0)
		{
			close(serv_sock);
			/* QUIRK 4: read() returning -1 (a reset) and short writes are not
			 * handled: -1 != 0 keeps the loop going on a dead socket. */
			while((str_len=read(clnt_sock, buf, BUF_SIZE))!=0)
				write(clnt_sock, buf, str_len);

			close(clnt_sock);
			puts("client disconnected...");
			return 0;
		}
		else
			close(clnt_sock);
	}
	close(serv_sock);
	return 0;
}

/* QUIRK 5: one waitpid() per SIGCHLD. Signals do not queue: children that
 * end together raise one SIGCHLD, and all but one stay zombies until a
 * later signal. QUIRK 6: printf() is not async-signal-safe. */
void read_childproc(int sig)
{
	pid_t pid;
	int status;
	pid=waitpid(-1, &status, WNOHANG);
	printf("removed proc id: %d \n", pid);
}
void error_handling(char *message)
{
	fputs(message, stderr);
	fputc('\n', stderr);
	exit(1);
}
