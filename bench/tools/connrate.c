/* SPDX-License-Identifier: Apache-2.0 */
/*
 * New-connection load for the services benchmark, light enough that the
 * router's datapath, not the client, sets the rate.
 *
 *   connrate server PORT                         accept, write "hello\n", close (RST)
 *   connrate client HOST PORT SECONDS PARALLEL   connect, read the greeting, close; repeat
 *
 * The client prints {"done":N,"failed":N} after SECONDS. Closes use
 * SO_LINGER 0 (RST), so neither side piles up TIME_WAIT sockets.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void hard_close(int fd)
{
	struct linger l = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

static int server(int port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = INADDR_ANY };
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 4096)) {
		perror("listen");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		int c = accept(s, NULL, NULL);
		if (c < 0)
			continue;
		if (write(c, "hello\n", 6) < 0) {
			/* the client went away: nothing to do */
		}
		hard_close(c);
	}
}

struct conn {
	int fd;
	double started;
};

static int start(int ep, struct sockaddr_in *dst, struct conn *c)
{
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	c->started = now_s();
	if (c->fd < 0)
		return -1;
	if (connect(c->fd, (struct sockaddr *)dst, sizeof(*dst)) && errno != EINPROGRESS) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	struct epoll_event ev = { .events = EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP, .data.ptr = c };
	return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static int client(const char *host, int port, double seconds, int parallel)
{
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct conn *cs = calloc(parallel, sizeof(*cs));
	struct epoll_event evs[256];
	long done = 0, failed = 0;
	int ep = epoll_create1(0);
	double end;

	if (inet_pton(AF_INET, host, &dst.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", host);
		return 2;
	}
	for (int i = 0; i < parallel; i++)
		if (start(ep, &dst, &cs[i]))
			failed++;
	end = now_s() + seconds;
	while (now_s() < end) {
		int n = epoll_wait(ep, evs, 256, 50);
		double t = now_s();
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			char buf[16];
			ssize_t r = read(c->fd, buf, sizeof(buf));
			if (r > 0)
				done++;
			else
				failed++;
			epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
			hard_close(c->fd);
			if (start(ep, &dst, c))
				failed++;
		}
		/* A connection that got nothing for a second (a dropped SYN) is started again. */
		for (int i = 0; i < parallel; i++) {
			if (cs[i].fd >= 0 && t - cs[i].started > 1.0) {
				epoll_ctl(ep, EPOLL_CTL_DEL, cs[i].fd, NULL);
				hard_close(cs[i].fd);
				failed++;
				if (start(ep, &dst, &cs[i]))
					failed++;
			}
		}
	}
	printf("{\"done\":%ld,\"failed\":%ld}\n", done, failed);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "server"))
		return server(atoi(argv[2]));
	if (argc == 6 && !strcmp(argv[1], "client"))
		return client(argv[2], atoi(argv[3]), atof(argv[4]), atoi(argv[5]));
	fprintf(stderr, "usage: connrate server PORT | connrate client HOST PORT SECONDS PARALLEL\n");
	return 2;
}
