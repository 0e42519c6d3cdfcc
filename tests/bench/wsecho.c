/*
 * wsecho: the plaintext WebSocket echo upstream of the wsgate benchmark.
 *
 * One thread, epoll, non-blocking sockets.  It answers any upgrade request
 * with 101, then sends every data frame back unmasked with the same opcode
 * and FIN bit (fragments are echoed as fragments), answers ping with pong
 * and close with close.  All complete frames of one read are echoed with
 * one write, so it stays cheap next to the proxy being measured.
 *
 * usage: wsecho [-a address] [-p port]
 * Prints "listening ADDRESS:PORT" on stdout once it accepts.
 */

#define _GNU_SOURCE

#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "frame.h"		/* frame_unmask(): wsgate's, with SSE2 */

#define WSE_MAX_HEAD		8192
#define WSE_MAX_FRAME		(64 * 1024 * 1024)
#define WSE_READ_CHUNK		(64 * 1024)
#define WSE_MAX_OUT		(4 * 1024 * 1024) /* stop reading above it */

static const char wse_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

struct wse_conn {
	int		 c_fd;
	int		 c_open;	/* upgrade done */
	int		 c_closing;	/* close frame sent; end after flush */
	uint32_t	 c_events;
	unsigned char	*c_in;
	size_t		 c_inoff, c_inlen, c_incap;
	unsigned char	*c_out;
	size_t		 c_outoff, c_outlen, c_outcap;
};

static int		 wse_ep;
static volatile sig_atomic_t wse_quit;

static void
wse_die(const char *what)
{
	fprintf(stderr, "wsecho: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void
wse_sig_cb(int sig)
{
	(void)sig;
	wse_quit = 1;
}

/* Make room for more bytes at the end of a buffer; -1 over the cap. */
static int
wse_reserve(unsigned char **buf, size_t *off, size_t *len, size_t *cap,
    size_t more)
{
	unsigned char	*nb;
	size_t		 ncap;

	if (*off > 0 && (*off == *len || *cap - *len < more)) {
		memmove(*buf, *buf + *off, *len - *off);
		*len -= *off;
		*off = 0;
	}
	if (*cap - *len >= more)
		return 0;
	ncap = *cap ? *cap : 4096;
	while (ncap - *len < more)
		ncap *= 2;
	if (ncap > 2 * (size_t)WSE_MAX_FRAME + WSE_READ_CHUNK)
		return -1;
	if ((nb = realloc(*buf, ncap)) == NULL)
		return -1;
	*buf = nb;
	*cap = ncap;
	return 0;
}

static void
wse_close(struct wse_conn *c)
{
	epoll_ctl(wse_ep, EPOLL_CTL_DEL, c->c_fd, NULL);
	close(c->c_fd);
	free(c->c_in);
	free(c->c_out);
	free(c);
}

static void
wse_interest(struct wse_conn *c)
{
	struct epoll_event	ev;
	uint32_t		want = 0;

	if (c->c_outlen - c->c_outoff < WSE_MAX_OUT && !c->c_closing)
		want |= EPOLLIN;
	if (c->c_outlen > c->c_outoff)
		want |= EPOLLOUT;
	if (want == c->c_events)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.events = want;
	ev.data.ptr = c;
	epoll_ctl(wse_ep, EPOLL_CTL_MOD, c->c_fd, &ev);
	c->c_events = want;
}

static int
wse_append(struct wse_conn *c, const void *data, size_t len)
{
	if (wse_reserve(&c->c_out, &c->c_outoff, &c->c_outlen, &c->c_outcap,
	    len) == -1)
		return -1;
	memcpy(c->c_out + c->c_outlen, data, len);
	c->c_outlen += len;
	return 0;
}

/* Answer the upgrade request; 1 when done, 0 when more is needed. */
static int
wse_upgrade(struct wse_conn *c)
{
	unsigned char	 md[EVP_MAX_MD_SIZE];
	char		*head, *end, *key, *p, buf[256], acc[64], resp[512];
	unsigned int	 mdlen;
	size_t		 kl;
	int		 n;

	head = (char *)c->c_in + c->c_inoff;
	end = memmem(head, c->c_inlen - c->c_inoff, "\r\n\r\n", 4);
	if (end == NULL)
		return c->c_inlen - c->c_inoff > WSE_MAX_HEAD ? -1 : 0;
	*end = '\0';
	key = NULL;
	for (p = strstr(head, "\r\n"); p != NULL; p = strstr(p, "\r\n")) {
		p += 2;
		if (strncasecmp(p, "Sec-WebSocket-Key:", 18) == 0) {
			key = p + 18;
			break;
		}
	}
	if (key == NULL)
		return -1;
	while (*key == ' ' || *key == '\t')
		key++;
	kl = strcspn(key, "\r \t");
	if (kl == 0 || kl > 64)
		return -1;
	snprintf(buf, sizeof(buf), "%.*s%s", (int)kl, key, wse_guid);
	if (!EVP_Digest(buf, strlen(buf), md, &mdlen, EVP_sha1(), NULL))
		return -1;
	EVP_EncodeBlock((unsigned char *)acc, md, (int)mdlen);
	n = snprintf(resp, sizeof(resp),
	    "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n\r\n", acc);
	c->c_inoff += (size_t)(end - head) + 4;
	c->c_open = 1;
	return wse_append(c, resp, (size_t)n) == -1 ? -1 : 1;
}

/* Echo every complete frame in the input buffer. */
static int
wse_frames(struct wse_conn *c)
{
	unsigned char	*p, *pl, *mask, hdr[10];
	uint64_t	 len;
	size_t		 avail, hl, hn, i;
	int		 opcode;

	while (!c->c_closing) {
		p = c->c_in + c->c_inoff;
		avail = c->c_inlen - c->c_inoff;
		if (avail < 2)
			return 0;
		opcode = p[0] & 0x0f;
		if (!(p[1] & 0x80))
			return -1;	/* clients must mask */
		len = p[1] & 0x7f;
		hl = 2;
		if (len == 126) {
			if (avail < 4)
				return 0;
			len = (uint64_t)p[2] << 8 | p[3];
			hl = 4;
		} else if (len == 127) {
			if (avail < 10)
				return 0;
			for (len = 0, i = 0; i < 8; i++)
				len = len << 8 | p[2 + i];
			hl = 10;
		}
		if (len > WSE_MAX_FRAME)
			return -1;
		if (avail < hl + 4 + len)
			return 0;
		mask = p + hl;
		pl = p + hl + 4;
		c->c_inoff += hl + 4 + (size_t)len;

		if (opcode == 0x9)
			opcode = 0xa;
		else if (opcode == 0xa)
			continue;
		hdr[0] = (p[0] & 0x80) | (unsigned char)opcode;
		if (len < 126) {
			hdr[1] = (unsigned char)len;
			hn = 2;
		} else if (len < 65536) {
			hdr[1] = 126;
			hdr[2] = (unsigned char)(len >> 8);
			hdr[3] = (unsigned char)len;
			hn = 4;
		} else {
			hdr[1] = 127;
			for (i = 0; i < 8; i++)
				hdr[2 + i] = (unsigned char)(len >> (56 - 8 * i));
			hn = 10;
		}
		/* Unmasked straight into the output: one pass, no copy. */
		if (wse_append(c, hdr, hn) == -1 ||
		    wse_reserve(&c->c_out, &c->c_outoff, &c->c_outlen,
		    &c->c_outcap, (size_t)len) == -1)
			return -1;
		frame_unmask(c->c_out + c->c_outlen, pl, (size_t)len, mask, 0);
		c->c_outlen += (size_t)len;
		if (opcode == 0x8)
			c->c_closing = 1;
	}
	return 0;
}

static int
wse_flush(struct wse_conn *c)
{
	ssize_t	n;

	while (c->c_outlen > c->c_outoff) {
		n = write(c->c_fd, c->c_out + c->c_outoff,
		    c->c_outlen - c->c_outoff);
		if (n == -1)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		c->c_outoff += (size_t)n;
	}
	c->c_outoff = c->c_outlen = 0;
	return 0;
}

static void
wse_event(struct wse_conn *c, uint32_t events)
{
	ssize_t	n;
	int	eof = 0;

	if ((events & EPOLLOUT) && wse_flush(c) == -1) {
		wse_close(c);
		return;
	}
	if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->c_closing) {
		for (;;) {
			if (wse_reserve(&c->c_in, &c->c_inoff, &c->c_inlen,
			    &c->c_incap, WSE_READ_CHUNK) == -1) {
				wse_close(c);
				return;
			}
			n = read(c->c_fd, c->c_in + c->c_inlen,
			    c->c_incap - c->c_inlen);
			if (n == 0) {
				eof = 1;
				break;
			}
			if (n == -1) {
				if (errno == EAGAIN || errno == EINTR)
					break;
				wse_close(c);
				return;
			}
			c->c_inlen += (size_t)n;
			if ((size_t)n < WSE_READ_CHUNK)
				break;
		}
		if (!c->c_open) {
			switch (wse_upgrade(c)) {
			case -1:
				wse_close(c);
				return;
			case 0:
				goto out;
			}
		}
		if (wse_frames(c) == -1) {
			wse_close(c);
			return;
		}
	}
out:
	if (wse_flush(c) == -1 || eof ||
	    (c->c_closing && c->c_outlen == c->c_outoff)) {
		wse_close(c);
		return;
	}
	wse_interest(c);
}

static void
wse_accept(int lfd)
{
	struct epoll_event	 ev;
	struct wse_conn		*c;
	int			 fd, one = 1;

	for (;;) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1)
			return;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			close(fd);
			continue;
		}
		c->c_fd = fd;
		c->c_events = EPOLLIN;
		memset(&ev, 0, sizeof(ev));
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(wse_ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
			close(fd);
			free(c);
		}
	}
}

int
main(int argc, char **argv)
{
	struct epoll_event	 ev, evs[256];
	struct sockaddr_in	 sin;
	struct rlimit		 rl;
	struct sigaction	 sa;
	socklen_t		 sl;
	const char		*addr = "127.0.0.1";
	int			 ch, lfd, i, n, port = 0, one = 1;
	static int		 listener_tag;

	while ((ch = getopt(argc, argv, "a:p:")) != -1) {
		switch (ch) {
		case 'a':
			addr = optarg;
			break;
		case 'p':
			port = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: wsecho [-a address] "
			    "[-p port]\n");
			return 2;
		}
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = wse_sig_cb;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, addr, &sin.sin_addr) != 1) {
		fprintf(stderr, "wsecho: bad IPv4 address %s\n", addr);
		return 2;
	}
	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) == -1)
		wse_die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		wse_die("bind");
	if (listen(lfd, 4096) == -1)
		wse_die("listen");
	sl = sizeof(sin);
	getsockname(lfd, (struct sockaddr *)&sin, &sl);
	if ((wse_ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		wse_die("epoll_create1");
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = &listener_tag;
	if (epoll_ctl(wse_ep, EPOLL_CTL_ADD, lfd, &ev) == -1)
		wse_die("epoll_ctl");
	printf("listening %s:%d\n", addr, ntohs(sin.sin_port));
	fflush(stdout);

	while (!wse_quit) {
		n = epoll_wait(wse_ep, evs, 256, 500);
		if (n == -1 && errno != EINTR)
			wse_die("epoll_wait");
		for (i = 0; i < n; i++) {
			if (evs[i].data.ptr == &listener_tag)
				wse_accept(lfd);
			else
				wse_event(evs[i].data.ptr, evs[i].events);
		}
	}
	return 0;
}
