/* SPDX-License-Identifier: Apache-2.0 */
/*
 * New-connection load for the services benchmark, light enough that the
 * router's datapath, not the client, sets the rate.
 *
 *   connrate server PORT                         accept, write "hello\n", close (RST)
 *   connrate client HOST PORT SECONDS PARALLEL   connect, read the greeting, close; repeat
 *   connrate syn SRC NSRC HOST PORT SECONDS PART PARTS
 *                                                first packets of new connections: TCP SYNs
 *                                                from a fresh (source address, port) each
 *
 * The client prints {"done":N,"failed":N} after SECONDS. Closes use
 * SO_LINGER 0 (RST), so neither side piles up TIME_WAIT sockets.
 *
 * `syn` sends from a raw socket (IP_HDRINCL), in batches (sendmmsg), SYNs
 * from NSRC consecutive addresses starting at SRC and every port 1024-65535
 * (the share PART of PARTS processes), never the same tuple twice in a run:
 * each is a new connection to conntrack and NAT. Sending from a process, the
 * kernel forwards each packet before the send returns (veth), so the rate it
 * reaches includes the router's work for every new connection. It prints
 * {"sent":N,"failed":N,"seconds":S}.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/ip.h>
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

static unsigned short csum16(const void *p, int n, unsigned int sum)
{
	const unsigned char *b = p;
	for (int i = 0; i + 1 < n; i += 2)
		sum += (b[i] << 8) | b[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (unsigned short)~sum;
}

#define SYN_BATCH 64

static int syn(const char *src, int nsrc, const char *host, int port, double seconds, int part, int parts)
{
	struct in_addr s0, d;
	unsigned char pk[SYN_BATCH][40];
	struct mmsghdr msgs[SYN_BATCH];
	struct iovec iov[SYN_BATCH];
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW), one = 1;
	long sent = 0, failed = 0, i = 0;
	long per_addr = (65536 - 1024 - part + parts - 1) / parts;
	long total = per_addr * nsrc;
	double t0, end;

	if (fd < 0 || setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &one, sizeof(one))) {
		perror("raw socket");
		return 1;
	}
	if (inet_pton(AF_INET, src, &s0) != 1 || inet_pton(AF_INET, host, &d) != 1 || nsrc < 1 || parts < 1 || part < 0 || part >= parts) {
		fprintf(stderr, "bad arguments\n");
		return 2;
	}
	dst.sin_addr = d;
	memset(msgs, 0, sizeof(msgs));
	for (int k = 0; k < SYN_BATCH; k++) {
		iov[k].iov_base = pk[k];
		iov[k].iov_len = 40;
		msgs[k].msg_hdr.msg_iov = &iov[k];
		msgs[k].msg_hdr.msg_iovlen = 1;
		msgs[k].msg_hdr.msg_name = &dst;
		msgs[k].msg_hdr.msg_namelen = sizeof(dst);
	}
	t0 = now_s();
	end = t0 + seconds;
	while (now_s() < end && i < total) {
		int n = 0;
		for (; n < SYN_BATCH && i < total; n++, i++) {
			unsigned char *ip = pk[n], *tcp = pk[n] + 20, ph[12];
			unsigned int saddr = ntohl(s0.s_addr) + (unsigned int)(i % nsrc);
			unsigned short sport = (unsigned short)(1024 + part + (i / nsrc) * parts);
			unsigned int seq = (unsigned int)(i * 2654435761u);
			memset(ip, 0, 40);
			ip[0] = 0x45;
			ip[3] = 40;
			ip[6] = 0x40; /* DF */
			ip[8] = 64;
			ip[9] = IPPROTO_TCP;
			*(unsigned int *)(ip + 12) = htonl(saddr);
			memcpy(ip + 16, &d, 4);
			*(unsigned short *)(tcp) = htons(sport);
			*(unsigned short *)(tcp + 2) = htons(port);
			*(unsigned int *)(tcp + 4) = htonl(seq);
			tcp[12] = 5 << 4;
			tcp[13] = 0x02; /* SYN */
			*(unsigned short *)(tcp + 14) = htons(64240);
			memcpy(ph, ip + 12, 8);
			ph[8] = 0;
			ph[9] = IPPROTO_TCP;
			ph[10] = 0;
			ph[11] = 20;
			unsigned int sum = 0;
			for (int k = 0; k < 12; k += 2)
				sum += (ph[k] << 8) | ph[k + 1];
			*(unsigned short *)(tcp + 16) = htons(csum16(tcp, 20, sum));
		}
		int r = sendmmsg(fd, msgs, n, 0);
		if (r < 0) {
			failed += n;
			continue;
		}
		sent += r;
		failed += n - r;
	}
	printf("{\"sent\":%ld,\"failed\":%ld,\"seconds\":%.6f}\n", sent, failed, now_s() - t0);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 9 && !strcmp(argv[1], "syn"))
		return syn(argv[2], atoi(argv[3]), argv[4], atoi(argv[5]), atof(argv[6]), atoi(argv[7]), atoi(argv[8]));
	if (argc == 3 && !strcmp(argv[1], "server"))
		return server(atoi(argv[2]));
	if (argc == 6 && !strcmp(argv[1], "client"))
		return client(argv[2], atoi(argv[3]), atof(argv[4]), atoi(argv[5]));
	fprintf(stderr, "usage: connrate server PORT | connrate client HOST PORT SECONDS PARALLEL | connrate syn SRC NSRC HOST PORT SECONDS PART PARTS\n");
	return 2;
}
