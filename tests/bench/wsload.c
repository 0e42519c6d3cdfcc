/*
 * wsload: the WebSocket load generator of the wsgate benchmark.
 *
 * One thread and one epoll set drive N client connections (TLS with
 * non-blocking OpenSSL, or plaintext) so that the figures depend on the
 * proxy under test, not on the generator; pin it to its own core with
 * taskset.  Every mode is bounded by its duration and by connect and
 * handshake timeouts, and ends by printing one JSON line on stdout.
 *
 * Modes:
 *   echo       K messages of S bytes in flight per connection; each echoed
 *              message is checked and timed (round trip) and replaced.
 *   flood      the client keeps its send buffer full and counts the echoed
 *              messages that come back: throughput limited only by the
 *              proxy's flow control, no latency figures.
 *   idle       open N connections, finish every upgrade, print "READY n" on
 *              stderr, then hold them silent until the duration ends or a
 *              SIGTERM arrives (the caller reads the proxy's RSS meanwhile).
 *   handshake  C slots each loop: connect, TLS, upgrade, close; with -T a
 *              TLS 1.3 session ticket is offered, each one once only (RFC
 *              8446, C.4; OpenSSL marks a ticket spent once it resumed),
 *              the newest first, from a pool of those the server sent.
 *
 * See tests/bench/README.md for the JSON fields.
 */

#define _GNU_SOURCE

#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "frame.h"		/* frame_unmask(): wsgate's, with SSE2 */

#define WSL_MAX_CONNS		200000
#define WSL_MAX_SIZE		(16 * 1024 * 1024)
#define WSL_MAX_INFLIGHT	4096
#define WSL_MAX_HEAD		8192
#define WSL_MAX_PENDING		128	/* connections being set up at once */
#define WSL_HIST_US		2000000	/* 1 us buckets up to 2 s */
#define WSL_FLOOD_QUEUE		(128 * 1024)
#define WSL_READ_CHUNK		(64 * 1024)
/* OpenSSL's read-ahead buffer: four full TLS records. */
#define WSL_TLS_READ_BUF	(4 * (16384 + 256 + 5))
/* The write buffer of the echo and flood modes: as many records. */
#define WSL_TLS_WRITE_BUF	WSL_TLS_READ_BUF
#define WSL_TICK_MS		20
#define WSL_TICKETS		256	/* unused tickets kept, -T */

static const char wsl_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

enum wsl_mode {
	MODE_ECHO,
	MODE_FLOOD,
	MODE_IDLE,
	MODE_HANDSHAKE
};

static const char *wsl_mode_names[] = { "echo", "flood", "idle",
    "handshake" };

enum wsl_state {
	ST_FREE,
	ST_CONNECT,
	ST_TLS,
	ST_RESPONSE,
	ST_OPEN
};

struct wsl_conn {
	int			 c_fd;
	SSL			*c_ssl;
	enum wsl_state		 c_state;
	uint32_t		 c_events;	/* registered with epoll */
	int			 c_ssl_wantout;
	uint64_t		 c_deadline;	/* ns; setup must end by it */
	unsigned char		*c_in;
	size_t			 c_inoff, c_inlen, c_incap;
	unsigned char		*c_out;
	size_t			 c_outoff, c_outlen, c_outcap;
	uint64_t		*c_sent;	/* ring of send times, ns */
	unsigned		 c_head, c_count;
	size_t			 c_msglen;	/* message so far, fragmented */
	int			 c_msgop;	/* its opcode, 0: none begun */
	char			 c_accept[32];	/* expected Sec-WebSocket-Accept */
};

static struct {
	enum wsl_mode	 mode;
	int		 tls;
	char		 host[256];
	char		 port[16];
	char		 path[1024];
	int		 conns;
	size_t		 size;
	unsigned	 inflight;
	double		 seconds;
	double		 warmup;
	double		 timeout;
	uint64_t	 count;		/* stop after this many, 0: no limit */
	int		 text;
	int		 tickets;
	int		 verify_data;
	pid_t		 cpu_pid;
	const char	*ready_file;
} opt = {
	.mode = MODE_ECHO, .conns = 1, .size = 32, .inflight = 1,
	.seconds = 10, .warmup = 2, .timeout = 10, .verify_data = 1,
};

static struct {
	int		 ep;
	SSL_CTX		*ctx;
	struct addrinfo	*ai;
	struct wsl_conn	*conns;
	unsigned char	*payload;	/* unmasked template */
	uint64_t	 rng;
	uint32_t	*hist;
	int		 measuring;
	int		 stopping;
	uint64_t	 t_start, t_end;
	double		 cpu_start, cpu_end;
	double		 user_start, user_end;
	uint64_t	 messages;
	uint64_t	 bytes;
	uint64_t	 lat_max;
	uint64_t	 errors;
	uint64_t	 open;		/* connections upgraded now */
	uint64_t	 opened;	/* upgrades done, whole run */
	uint64_t	 resumed;
	int		 pending;	/* connections in setup */
	int		 started;	/* idle: connections started */
	SSL_SESSION	*tickets[WSL_TICKETS];	/* unused, oldest first */
	int		 ntickets;
	char		 first_error[256];
} g;

static volatile sig_atomic_t wsl_signalled;

static void	wsl_conn_close(struct wsl_conn *, int);
static void	wsl_error(const char *, ...)
		    __attribute__((format(printf, 1, 2)));
static void	wsl_die(const char *, ...)
		    __attribute__((format(printf, 1, 2), noreturn));
static int	wsl_conn_start(struct wsl_conn *);

/* Record an error: the first one is kept for the JSON line. */
static void
wsl_error(const char *fmt, ...)
{
	va_list	ap;

	g.errors++;
	if (g.first_error[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(g.first_error, sizeof(g.first_error), fmt, ap);
	va_end(ap);
}

static void
wsl_die(const char *fmt, ...)
{
	va_list	ap;

	fprintf(stderr, "wsload: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(1);
}

static uint64_t
wsl_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* A fast generator for frame masks; not for secrets. */
static uint32_t
wsl_rand32(void)
{
	g.rng ^= g.rng << 13;
	g.rng ^= g.rng >> 7;
	g.rng ^= g.rng << 17;
	return (uint32_t)(g.rng >> 16);
}

static void
wsl_sig_cb(int sig)
{
	(void)sig;
	wsl_signalled = 1;
}

/*
 * utime + stime of a process in seconds, or -1 when it is gone; utime
 * alone into *user.
 */
static double
wsl_proc_cpu(pid_t pid, double *user)
{
	char			 path[64], buf[1024], *p;
	unsigned long		 ut, st;
	FILE			*f;
	size_t			 n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* Fields after the command name, which may hold spaces. */
	if ((p = strrchr(buf, ')')) == NULL)
		return -1;
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
	    "%lu %lu", &ut, &st) != 2)
		return -1;
	*user = (double)ut / (double)sysconf(_SC_CLK_TCK);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Make room for len more bytes at the end of a buffer. */
static int
wsl_buf_reserve(unsigned char **buf, size_t *off, size_t *len, size_t *cap,
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
	if (ncap > 2 * (size_t)WSL_MAX_SIZE + WSL_READ_CHUNK)
		return -1;
	if ((nb = realloc(*buf, ncap)) == NULL)
		return -1;
	*buf = nb;
	*cap = ncap;
	return 0;
}

static void
wsl_conn_interest(struct wsl_conn *c)
{
	struct epoll_event	ev;
	uint32_t		want = EPOLLIN;

	if (c->c_state == ST_CONNECT || c->c_ssl_wantout ||
	    c->c_outlen > c->c_outoff)
		want |= EPOLLOUT;
	if (want == c->c_events)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.events = want;
	ev.data.ptr = c;
	if (epoll_ctl(g.ep, EPOLL_CTL_MOD, c->c_fd, &ev) == -1)
		wsl_die("epoll_ctl: %s", strerror(errno));
	c->c_events = want;
}

/* Append one masked frame of the given opcode to the output buffer. */
static int
wsl_frame_append(struct wsl_conn *c, int opcode, const unsigned char *data,
    size_t len)
{
	unsigned char	*p;
	uint32_t	 mask;
	size_t		 hl, i;

	hl = len < 126 ? 6 : len < 65536 ? 8 : 14;
	if (wsl_buf_reserve(&c->c_out, &c->c_outoff, &c->c_outlen,
	    &c->c_outcap, hl + len) == -1)
		return -1;
	p = c->c_out + c->c_outlen;
	p[0] = 0x80 | (unsigned char)opcode;
	if (len < 126) {
		p[1] = 0x80 | (unsigned char)len;
	} else if (len < 65536) {
		p[1] = 0x80 | 126;
		p[2] = (unsigned char)(len >> 8);
		p[3] = (unsigned char)len;
	} else {
		p[1] = 0x80 | 127;
		for (i = 0; i < 8; i++)
			p[2 + i] = (unsigned char)((uint64_t)len >>
			    (56 - 8 * i));
	}
	mask = wsl_rand32();
	memcpy(p + hl - 4, &mask, 4);
	frame_unmask(p + hl, data, len, p + hl - 4, 0);
	c->c_outlen += hl + len;
	return 0;
}

static int
wsl_send_message(struct wsl_conn *c)
{
	if (wsl_frame_append(c, opt.text ? 1 : 2, g.payload, opt.size) == -1)
		return -1;
	if (opt.mode == MODE_ECHO) {
		c->c_sent[(c->c_head + c->c_count) % opt.inflight] = wsl_now();
		c->c_count++;
	}
	return 0;
}

/*
 * The TLS connection's descriptor as OpenSSL's BIOs.  In the echo and
 * flood modes records are written through a buffer that one write(2)
 * empties when SSL_write() is done (wsl_conn_flush()): a 16 KiB message
 * with its frame header is two records, and written one by one they cost
 * the load core a system call each.  The buffer is per connection, so the
 * idle and handshake modes, which hold thousands, write directly.
 */
static int
wsl_conn_bio(struct wsl_conn *c)
{
	BIO	*rb, *wb, *buf;

	if (opt.mode != MODE_ECHO && opt.mode != MODE_FLOOD)
		return SSL_set_fd(c->c_ssl, c->c_fd) == 1 ? 0 : -1;
	rb = BIO_new_socket(c->c_fd, BIO_NOCLOSE);
	wb = BIO_new_socket(c->c_fd, BIO_NOCLOSE);
	buf = BIO_new(BIO_f_buffer());
	if (rb == NULL || wb == NULL || buf == NULL ||
	    BIO_set_write_buffer_size(buf, WSL_TLS_WRITE_BUF) <= 0) {
		BIO_free(rb);
		BIO_free(wb);
		BIO_free(buf);
		return -1;
	}
	SSL_set_bio(c->c_ssl, rb, BIO_push(buf, wb));
	return 0;
}

/* Write what the output buffer holds; -1 on a broken connection. */
static int
wsl_conn_flush(struct wsl_conn *c)
{
	ssize_t	n;
	int	r;

	c->c_ssl_wantout = 0;
	while (c->c_outlen > c->c_outoff) {
		if (c->c_ssl != NULL) {
			r = SSL_write(c->c_ssl, c->c_out + c->c_outoff,
			    (int)(c->c_outlen - c->c_outoff));
			if (r <= 0) {
				switch (SSL_get_error(c->c_ssl, r)) {
				case SSL_ERROR_WANT_WRITE:
					c->c_ssl_wantout = 1;
					return 0;
				case SSL_ERROR_WANT_READ:
					return 0;
				default:
					wsl_error("SSL_write: %s",
					    ERR_reason_error_string(
					    ERR_peek_last_error()));
					ERR_clear_error();
					return -1;
				}
			}
			n = r;
		} else {
			n = write(c->c_fd, c->c_out + c->c_outoff,
			    c->c_outlen - c->c_outoff);
			if (n == -1) {
				if (errno == EAGAIN || errno == EINTR)
					return 0;
				wsl_error("write: %s", strerror(errno));
				return -1;
			}
		}
		c->c_outoff += (size_t)n;
	}
	c->c_outoff = c->c_outlen = 0;
	if (c->c_ssl != NULL && BIO_wpending(SSL_get_wbio(c->c_ssl)) > 0 &&
	    BIO_flush(SSL_get_wbio(c->c_ssl)) <= 0) {
		if (!BIO_should_retry(SSL_get_wbio(c->c_ssl))) {
			wsl_error("write: %s", strerror(errno));
			return -1;
		}
		c->c_ssl_wantout = 1;
	}
	return 0;
}

/* Read what is there; 1 at end of stream, -1 on error. */
static int
wsl_conn_fill(struct wsl_conn *c)
{
	ssize_t	n;
	int	r;

	for (;;) {
		if (wsl_buf_reserve(&c->c_in, &c->c_inoff, &c->c_inlen,
		    &c->c_incap, WSL_READ_CHUNK) == -1) {
			wsl_error("input buffer over its cap");
			return -1;
		}
		if (c->c_ssl != NULL) {
			r = SSL_read(c->c_ssl, c->c_in + c->c_inlen,
			    (int)(c->c_incap - c->c_inlen));
			if (r <= 0) {
				switch (SSL_get_error(c->c_ssl, r)) {
				case SSL_ERROR_WANT_READ:
					return 0;
				case SSL_ERROR_WANT_WRITE:
					c->c_ssl_wantout = 1;
					return 0;
				case SSL_ERROR_ZERO_RETURN:
					return 1;
				case SSL_ERROR_SYSCALL:
					if (ERR_peek_error() == 0)
						return 1;
					/* FALLTHROUGH */
				default:
					ERR_clear_error();
					return -1;
				}
			}
			n = r;
		} else {
			n = read(c->c_fd, c->c_in + c->c_inlen,
			    c->c_incap - c->c_inlen);
			if (n == 0)
				return 1;
			if (n == -1) {
				if (errno == EAGAIN || errno == EINTR)
					return 0;
				return -1;
			}
		}
		c->c_inlen += (size_t)n;
	}
}

/* Base64 of SHA-1 of key and GUID: what the server must answer. */
static void
wsl_accept_of(const char *key, char *out, size_t outlen)
{
	unsigned char	md[EVP_MAX_MD_SIZE];
	char		buf[128];
	unsigned int	mdlen;

	snprintf(buf, sizeof(buf), "%s%s", key, wsl_guid);
	if (!EVP_Digest(buf, strlen(buf), md, &mdlen, EVP_sha1(), NULL))
		wsl_die("EVP_Digest failed");
	if (outlen < 29)
		wsl_die("accept buffer too small");
	EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

static int
wsl_conn_request(struct wsl_conn *c)
{
	unsigned char	raw[16];
	char		key[32], req[2048];
	int		n;

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		wsl_die("RAND_bytes failed");
	EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
	wsl_accept_of(key, c->c_accept, sizeof(c->c_accept));
	n = snprintf(req, sizeof(req),
	    "GET %s HTTP/1.1\r\n"
	    "Host: %s:%s\r\n"
	    "Upgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Key: %s\r\n"
	    "Sec-WebSocket-Version: 13\r\n"
	    "User-Agent: wsload\r\n"
	    "\r\n", opt.path, opt.host, opt.port, key);
	if (wsl_buf_reserve(&c->c_out, &c->c_outoff, &c->c_outlen,
	    &c->c_outcap, (size_t)n) == -1)
		return -1;
	memcpy(c->c_out + c->c_outlen, req, (size_t)n);
	c->c_outlen += (size_t)n;
	c->c_state = ST_RESPONSE;
	return 0;
}

/* Check the 101 and its accept value; 1 when the head is complete. */
static int
wsl_conn_response(struct wsl_conn *c)
{
	char	*head, *end, *line, *next, *v;
	size_t	 hl;
	int	 accepted = 0;

	head = (char *)c->c_in + c->c_inoff;
	end = memmem(head, c->c_inlen - c->c_inoff, "\r\n\r\n", 4);
	if (end == NULL) {
		if (c->c_inlen - c->c_inoff > WSL_MAX_HEAD) {
			wsl_error("response head over %d bytes", WSL_MAX_HEAD);
			return -1;
		}
		return 0;
	}
	hl = (size_t)(end - head) + 4;
	*end = '\0';
	if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
		line = strchr(head, '\r');
		if (line != NULL)
			*line = '\0';
		wsl_error("upgrade refused: %.100s", head);
		return -1;
	}
	for (line = strstr(head, "\r\n"); line != NULL; line = next) {
		line += 2;
		next = strstr(line, "\r\n");
		if (next != NULL)
			*next = '\0';
		if (strncasecmp(line, "Sec-WebSocket-Accept:", 21) != 0)
			continue;
		for (v = line + 21; *v == ' ' || *v == '\t'; v++)
			;
		if (strncmp(v, c->c_accept, 28) == 0)
			accepted = 1;
	}
	if (!accepted) {
		wsl_error("missing or wrong Sec-WebSocket-Accept");
		return -1;
	}
	c->c_inoff += hl;
	return 1;
}

static int
wsl_conn_opened(struct wsl_conn *c)
{
	unsigned	i;

	c->c_state = ST_OPEN;
	c->c_deadline = 0;
	g.pending--;
	g.open++;
	g.opened++;
	if (c->c_ssl != NULL && SSL_session_reused(c->c_ssl))
		g.resumed++;
	switch (opt.mode) {
	case MODE_ECHO:
		for (i = 0; i < opt.inflight; i++)
			if (wsl_send_message(c) == -1)
				return -1;
		break;
	case MODE_FLOOD:
		while (c->c_outlen - c->c_outoff < WSL_FLOOD_QUEUE)
			if (wsl_send_message(c) == -1)
				return -1;
		break;
	case MODE_HANDSHAKE:
		if (g.measuring && ++g.messages == opt.count)
			g.stopping = 1;
		wsl_conn_close(c, 1);
		if (!g.stopping)
			wsl_conn_start(c);
		return 1;
	case MODE_IDLE:
		break;
	}
	return 0;
}

/* One whole data message came back. */
static int
wsl_message_done(struct wsl_conn *c, size_t len)
{
	uint64_t	t, lat;

	if (len != opt.size) {
		wsl_error("echoed message of %zu bytes, sent %zu", len,
		    opt.size);
		return -1;
	}
	if (opt.mode == MODE_ECHO) {
		if (c->c_count == 0) {
			wsl_error("unsolicited message");
			return -1;
		}
		t = wsl_now();
		lat = t - c->c_sent[c->c_head];
		c->c_head = (c->c_head + 1) % opt.inflight;
		c->c_count--;
		if (g.measuring) {
			g.messages++;
			g.bytes += len;
			if (lat > g.lat_max)
				g.lat_max = lat;
			lat /= 1000;
			g.hist[lat < WSL_HIST_US ? lat : WSL_HIST_US - 1]++;
			if (opt.count && g.messages >= opt.count)
				g.stopping = 1;
		}
		if (!g.stopping)
			return wsl_send_message(c);
		return 0;
	}
	if (g.measuring) {
		g.messages++;
		g.bytes += len;
		if (opt.count && g.messages >= opt.count)
			g.stopping = 1;
	}
	return 0;
}

/* Parse the server's frames in the input buffer. */
static int
wsl_conn_frames(struct wsl_conn *c)
{
	unsigned char	*p;
	uint64_t	 len;
	size_t		 avail, hl, i;
	int		 opcode, fin;

	for (;;) {
		p = c->c_in + c->c_inoff;
		avail = c->c_inlen - c->c_inoff;
		if (avail < 2)
			return 0;
		fin = p[0] & 0x80;
		opcode = p[0] & 0x0f;
		if (p[1] & 0x80) {
			wsl_error("masked frame from server");
			return -1;
		}
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
		if (len > WSL_MAX_SIZE) {
			wsl_error("frame of %llu bytes", (unsigned long long)len);
			return -1;
		}
		if (avail < hl + len)
			return 0;
		p += hl;
		c->c_inoff += hl + (size_t)len;
		switch (opcode) {
		case 0x0:
		case 0x1:
		case 0x2:
			if (opcode != 0 && c->c_msgop != 0) {
				wsl_error("new message inside a fragmented one");
				return -1;
			}
			if (opcode == 0 && c->c_msgop == 0) {
				wsl_error("continuation outside a message");
				return -1;
			}
			if (opcode != 0)
				c->c_msgop = opcode;
			/*
			 * Each fragment against its part of what was sent;
			 * bytes past the size sent fail wsl_message_done().
			 */
			if (opt.verify_data && c->c_msglen <= opt.size &&
			    len <= opt.size - c->c_msglen &&
			    memcmp(p, g.payload + c->c_msglen,
			    (size_t)len) != 0) {
				wsl_error("echoed payload differs");
				return -1;
			}
			c->c_msglen += (size_t)len;
			if (!fin)
				break;
			if (c->c_msgop != (opt.text ? 1 : 2)) {
				wsl_error("echoed message of another type "
				    "(opcode %d)", c->c_msgop);
				return -1;
			}
			len = c->c_msglen;
			c->c_msglen = 0;
			c->c_msgop = 0;
			if (wsl_message_done(c, (size_t)len) == -1)
				return -1;
			break;
		case 0x8:
			if (!g.stopping)
				wsl_error("server closed: code %d",
				    len >= 2 ? p[0] << 8 | p[1] : 1005);
			return -1;
		case 0x9:
			if (wsl_frame_append(c, 0xa, p, (size_t)len) == -1)
				return -1;
			break;
		case 0xa:
			break;
		default:
			wsl_error("reserved opcode %d", opcode);
			return -1;
		}
	}
}

/* Drive one connection after an epoll event. */
static void
wsl_conn_event(struct wsl_conn *c, uint32_t events)
{
	SSL_SESSION	*sess;
	socklen_t	sl;
	int		err, r;

	if (c->c_state == ST_CONNECT) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		err = 0;
		sl = sizeof(err);
		getsockopt(c->c_fd, SOL_SOCKET, SO_ERROR, &err, &sl);
		if (err != 0) {
			wsl_error("connect: %s", strerror(err));
			wsl_conn_close(c, 0);
			return;
		}
		if (opt.tls) {
			if ((c->c_ssl = SSL_new(g.ctx)) == NULL)
				wsl_die("SSL_new failed");
			if (wsl_conn_bio(c) == -1)
				wsl_die("BIO_new failed");
			SSL_set_connect_state(c->c_ssl);
			if (inet_pton(AF_INET, opt.host, &(struct in_addr){0})
			    != 1 && strchr(opt.host, ':') == NULL)
				SSL_set_tlsext_host_name(c->c_ssl, opt.host);
			if (opt.tickets && g.ntickets > 0) {
				sess = g.tickets[--g.ntickets];
				SSL_set_session(c->c_ssl, sess);
				SSL_SESSION_free(sess);
			}
			c->c_state = ST_TLS;
		} else if (wsl_conn_request(c) == -1) {
			wsl_conn_close(c, 0);
			return;
		}
	}
	if (c->c_state == ST_TLS) {
		c->c_ssl_wantout = 0;
		r = SSL_do_handshake(c->c_ssl);
		if (r != 1) {
			switch (SSL_get_error(c->c_ssl, r)) {
			case SSL_ERROR_WANT_READ:
				break;
			case SSL_ERROR_WANT_WRITE:
				c->c_ssl_wantout = 1;
				break;
			default:
				wsl_error("TLS handshake: %s",
				    ERR_peek_last_error() ?
				    ERR_reason_error_string(
				    ERR_peek_last_error()) : "connection lost");
				ERR_clear_error();
				wsl_conn_close(c, 0);
				return;
			}
			wsl_conn_interest(c);
			return;
		}
		if (wsl_conn_request(c) == -1) {
			wsl_conn_close(c, 0);
			return;
		}
	}
	if (wsl_conn_flush(c) == -1) {
		wsl_conn_close(c, 0);
		return;
	}
	r = wsl_conn_fill(c);
	if (r != 0 && c->c_inlen == c->c_inoff) {
		if (!g.stopping || c->c_state != ST_OPEN)
			wsl_error("connection %s (state %d)", r == 1 ?
			    "closed by peer" : "broken", (int)c->c_state);
		wsl_conn_close(c, 0);
		return;
	}
	if (c->c_state == ST_RESPONSE) {
		switch (wsl_conn_response(c)) {
		case -1:
			wsl_conn_close(c, 0);
			return;
		case 0:
			wsl_conn_interest(c);
			return;
		}
		switch (wsl_conn_opened(c)) {
		case -1:
			wsl_conn_close(c, 0);
			return;
		case 1:
			return;
		}
	}
	if (c->c_state == ST_OPEN && wsl_conn_frames(c) == -1) {
		wsl_conn_close(c, 0);
		return;
	}
	if (r != 0) {
		wsl_error("connection %s", r == 1 ? "closed by peer" :
		    "broken");
		wsl_conn_close(c, 0);
		return;
	}
	if (opt.mode == MODE_FLOOD && !g.stopping)
		while (c->c_outlen - c->c_outoff < WSL_FLOOD_QUEUE)
			if (wsl_send_message(c) == -1) {
				wsl_conn_close(c, 0);
				return;
			}
	if (wsl_conn_flush(c) == -1) {
		wsl_conn_close(c, 0);
		return;
	}
	wsl_conn_interest(c);
}

/* Close a connection; politely sends a close frame when asked to. */
static void
wsl_conn_close(struct wsl_conn *c, int polite)
{
	static const unsigned char	normal[2] = { 0x03, 0xe8 };

	if (c->c_state == ST_FREE)
		return;
	if (c->c_state == ST_OPEN)
		g.open--;
	else
		g.pending--;
	if (polite && c->c_state == ST_OPEN) {
		if (wsl_frame_append(c, 0x8, normal, 2) == 0)
			(void)wsl_conn_flush(c);
	}
	if (c->c_ssl != NULL) {
		if (polite)
			(void)SSL_shutdown(c->c_ssl);
		ERR_clear_error();
		SSL_free(c->c_ssl);
		c->c_ssl = NULL;
	}
	epoll_ctl(g.ep, EPOLL_CTL_DEL, c->c_fd, NULL);
	close(c->c_fd);
	c->c_fd = -1;
	c->c_state = ST_FREE;
	c->c_inoff = c->c_inlen = 0;
	c->c_outoff = c->c_outlen = 0;
	c->c_head = c->c_count = 0;
	c->c_msglen = 0;
	c->c_msgop = 0;
	c->c_ssl_wantout = 0;
}

/* Begin a connection in a free slot; -1 when it fails at once. */
static int
wsl_conn_start(struct wsl_conn *c)
{
	struct epoll_event	ev;
	int			fd, one = 1;

	fd = socket(g.ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1) {
		wsl_error("socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, g.ai->ai_addr, g.ai->ai_addrlen) == -1 &&
	    errno != EINPROGRESS) {
		wsl_error("connect: %s", strerror(errno));
		close(fd);
		return -1;
	}
	c->c_fd = fd;
	c->c_state = ST_CONNECT;
	c->c_deadline = wsl_now() + (uint64_t)(opt.timeout * 1e9);
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | EPOLLOUT;
	ev.data.ptr = c;
	if (epoll_ctl(g.ep, EPOLL_CTL_ADD, fd, &ev) == -1)
		wsl_die("epoll_ctl: %s", strerror(errno));
	c->c_events = ev.events;
	g.pending++;
	return 0;
}

/* Keep a TLS 1.3 ticket for a coming handshake: the pool is bounded. */
static int
wsl_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	(void)ssl;
	if (g.ntickets == WSL_TICKETS) {
		SSL_SESSION_free(g.tickets[0]);
		memmove(&g.tickets[0], &g.tickets[1],
		    (WSL_TICKETS - 1) * sizeof(g.tickets[0]));
		g.ntickets--;
	}
	g.tickets[g.ntickets++] = sess;
	return 1;
}

static void
wsl_parse_url(const char *url)
{
	const char	*p, *hs, *he, *ps;

	if (strncmp(url, "wss://", 6) == 0) {
		opt.tls = 1;
		p = url + 6;
	} else if (strncmp(url, "ws://", 5) == 0) {
		opt.tls = 0;
		p = url + 5;
	} else
		wsl_die("URL must start with ws:// or wss://: %s", url);
	if (*p == '[') {
		hs = p + 1;
		if ((he = strchr(hs, ']')) == NULL)
			wsl_die("bad URL: %s", url);
		ps = he + 1;
	} else {
		hs = p;
		he = p + strcspn(p, ":/");
		ps = he;
	}
	if ((size_t)(he - hs) >= sizeof(opt.host) || he == hs)
		wsl_die("bad host in URL: %s", url);
	memcpy(opt.host, hs, (size_t)(he - hs));
	opt.host[he - hs] = '\0';
	if (*ps == ':') {
		size_t n = strcspn(ps + 1, "/");

		if (n == 0 || n >= sizeof(opt.port))
			wsl_die("bad port in URL: %s", url);
		memcpy(opt.port, ps + 1, n);
		opt.port[n] = '\0';
		ps += 1 + n;
	} else
		snprintf(opt.port, sizeof(opt.port), "%s",
		    opt.tls ? "443" : "80");
	snprintf(opt.path, sizeof(opt.path), "%s", *ps ? ps : "/");
}

static void
wsl_usage(void)
{
	fprintf(stderr,
	    "usage: wsload [-m echo|flood|idle|handshake] [-c conns] "
	    "[-s size]\n"
	    "              [-k inflight] [-d seconds] [-w warmup] "
	    "[-n messages]\n"
	    "              [-o timeout] [-p cpu-pid] [-r ready-file] "
	    "[-t] [-T] [-V] URL\n"
	    "  URL       ws://host:port/path or wss://host:port/path\n"
	    "  -t        text messages (default binary)\n"
	    "  -T        offer an unused TLS session ticket (handshake)\n"
	    "  -V        do not compare echoed payloads\n"
	    "  -p pid    report that process's CPU time over the window\n");
	exit(2);
}

static double
wsl_num(const char *s, double min, double max, const char *what)
{
	char	*end;
	double	 v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		wsl_die("bad %s: %s (%g to %g)", what, s, min, max);
	return v;
}

static void
wsl_options(int argc, char **argv)
{
	int	ch, i;

	while ((ch = getopt(argc, argv, "c:d:hk:m:n:o:p:r:s:tTVw:")) != -1) {
		switch (ch) {
		case 'c':
			opt.conns = (int)wsl_num(optarg, 1, WSL_MAX_CONNS,
			    "connections");
			break;
		case 'd':
			opt.seconds = wsl_num(optarg, 0.1, 86400, "duration");
			break;
		case 'k':
			opt.inflight = (unsigned)wsl_num(optarg, 1,
			    WSL_MAX_INFLIGHT, "in-flight count");
			break;
		case 'm':
			for (i = 0; i < 4; i++)
				if (strcmp(optarg, wsl_mode_names[i]) == 0)
					break;
			if (i == 4)
				wsl_die("unknown mode: %s", optarg);
			opt.mode = (enum wsl_mode)i;
			break;
		case 'n':
			opt.count = (uint64_t)wsl_num(optarg, 1, 1e12,
			    "message count");
			break;
		case 'o':
			opt.timeout = wsl_num(optarg, 0.1, 600, "timeout");
			break;
		case 'p':
			opt.cpu_pid = (pid_t)wsl_num(optarg, 1, 1 << 30, "pid");
			break;
		case 'r':
			opt.ready_file = optarg;
			break;
		case 's':
			opt.size = (size_t)wsl_num(optarg, 0, WSL_MAX_SIZE,
			    "size");
			break;
		case 't':
			opt.text = 1;
			break;
		case 'T':
			opt.tickets = 1;
			break;
		case 'V':
			opt.verify_data = 0;
			break;
		case 'w':
			opt.warmup = wsl_num(optarg, 0, 3600, "warm-up");
			break;
		default:
			wsl_usage();
		}
	}
	if (optind != argc - 1)
		wsl_usage();
	wsl_parse_url(argv[optind]);
}

static void
wsl_setup(void)
{
	struct addrinfo		 hints;
	struct rlimit		 rl;
	struct sigaction	 sa;
	size_t			 i;
	int			 r;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    (rlim_t)opt.conns + 32 > rl.rlim_cur)
		wsl_die("%d connections need more than the file limit %llu",
		    opt.conns, (unsigned long long)rl.rlim_cur);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = wsl_sig_cb;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if ((r = getaddrinfo(opt.host, opt.port, &hints, &g.ai)) != 0)
		wsl_die("%s:%s: %s", opt.host, opt.port, gai_strerror(r));

	if (opt.tls) {
		if ((g.ctx = SSL_CTX_new(TLS_client_method())) == NULL)
			wsl_die("SSL_CTX_new failed");
		SSL_CTX_set_verify(g.ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_mode(g.ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
		    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		/*
		 * Read ahead into a buffer of four full records: without it
		 * OpenSSL reads each record's header and body with a read(2)
		 * each, and the load core, not the proxy, set the pace of
		 * the 16 KiB workload.
		 */
		SSL_CTX_set_read_ahead(g.ctx, 1);
		SSL_CTX_set_default_read_buffer_len(g.ctx, WSL_TLS_READ_BUF);
		SSL_CTX_set_session_cache_mode(g.ctx, SSL_SESS_CACHE_CLIENT |
		    SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(g.ctx, wsl_new_session_cb);
	}
	if ((g.ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		wsl_die("epoll_create1: %s", strerror(errno));
	if ((g.conns = calloc((size_t)opt.conns, sizeof(*g.conns))) == NULL ||
	    (g.payload = malloc(opt.size + 1)) == NULL ||
	    (g.hist = calloc(WSL_HIST_US, sizeof(*g.hist))) == NULL)
		wsl_die("out of memory");
	for (i = 0; i < (size_t)opt.conns; i++) {
		g.conns[i].c_fd = -1;
		if (opt.mode == MODE_ECHO &&
		    (g.conns[i].c_sent = calloc(opt.inflight,
		    sizeof(uint64_t))) == NULL)
			wsl_die("out of memory");
	}
	/* Printable ASCII: valid UTF-8 for text messages. */
	for (i = 0; i < opt.size; i++)
		g.payload[i] = (unsigned char)('a' + i % 26);
	g.rng = (uint64_t)wsl_now() | 1;
}

static void
wsl_window_start(uint64_t now)
{
	g.measuring = 1;
	g.t_start = now;
	g.messages = g.bytes = g.lat_max = 0;
	memset(g.hist, 0, WSL_HIST_US * sizeof(*g.hist));
	if (opt.cpu_pid)
		g.cpu_start = wsl_proc_cpu(opt.cpu_pid, &g.user_start);
}

/* Time out connections whose setup has taken too long. */
static void
wsl_sweep(uint64_t now)
{
	int	i;

	for (i = 0; i < opt.conns; i++) {
		struct wsl_conn *c = &g.conns[i];

		if (c->c_state == ST_FREE || c->c_state == ST_OPEN ||
		    c->c_deadline == 0 || now < c->c_deadline)
			continue;
		wsl_error("setup timed out (state %d)", (int)c->c_state);
		wsl_conn_close(c, 0);
	}
}

/*
 * The pct-th percentile of the round trips, nearest rank: the
 * ceil(pct / 100 * n)-th smallest, in integers (the floor named a smaller
 * one: of 10 round trips p99 was the 9th, not the slowest).
 */
static uint64_t
wsl_percentile(unsigned pct)
{
	uint64_t	want, cum = 0;
	size_t		i;

	if (g.messages == 0 || opt.mode != MODE_ECHO)
		return 0;
	want = (g.messages * pct + 99) / 100;
	if (want == 0)
		want = 1;
	for (i = 0; i < WSL_HIST_US; i++) {
		cum += g.hist[i];
		if (cum >= want)
			return i;
	}
	return WSL_HIST_US;
}

static void
wsl_report(int setup_failed)
{
	double	secs, cpu = 0, user = 0;
	char	err[300];
	size_t	i, j;

	secs = g.t_end > g.t_start && g.measuring ?
	    (double)(g.t_end - g.t_start) / 1e9 : 0;
	if (opt.cpu_pid && g.cpu_start >= 0 && g.cpu_end >= 0) {
		cpu = g.cpu_end - g.cpu_start;
		user = g.user_end - g.user_start;
	}
	/* JSON-safe copy of the first error. */
	for (i = j = 0; g.first_error[i] != '\0' && j < sizeof(err) - 1;
	    i++) {
		unsigned char ch = (unsigned char)g.first_error[i];

		err[j++] = ch == '"' || ch == '\\' || ch < 0x20 ? '?' :
		    (char)ch;
	}
	err[j] = '\0';
	printf("{\"mode\":\"%s\",\"tls\":%s,\"connections\":%d,\"size\":%zu,"
	    "\"inflight\":%u,\"seconds\":%.3f,\"messages\":%llu,"
	    "\"msgs_per_s\":%.1f,\"mb_per_s\":%.2f,\"p50_us\":%llu,"
	    "\"p90_us\":%llu,\"p99_us\":%llu,\"max_us\":%.1f,"
	    "\"proxy_cpu_s\":%.2f,\"proxy_user_s\":%.2f,"
	    "\"msgs_per_cpu_s\":%.1f,"
	    "\"opened\":%llu,\"resumed\":%llu,\"errors\":%llu,"
	    "\"setup_failed\":%s,\"first_error\":\"%s\"}\n",
	    wsl_mode_names[opt.mode], opt.tls ? "true" : "false", opt.conns,
	    opt.size, opt.inflight, secs, (unsigned long long)g.messages,
	    secs > 0 ? (double)g.messages / secs : 0,
	    secs > 0 ? (double)g.bytes / secs / 1e6 : 0,
	    (unsigned long long)wsl_percentile(50),
	    (unsigned long long)wsl_percentile(90),
	    (unsigned long long)wsl_percentile(99),
	    (double)g.lat_max / 1000.0, cpu, user,
	    cpu > 0 ? (double)g.messages / cpu : 0,
	    (unsigned long long)g.opened, (unsigned long long)g.resumed,
	    (unsigned long long)g.errors, setup_failed ? "true" : "false", err);
	fflush(stdout);
}

/* Announce that every idle connection is up. */
static void
wsl_ready(void)
{
	FILE	*f;

	fprintf(stderr, "READY %llu\n", (unsigned long long)g.open);
	fflush(stderr);
	if (opt.ready_file == NULL)
		return;
	if ((f = fopen(opt.ready_file, "w")) == NULL)
		wsl_die("%s: %s", opt.ready_file, strerror(errno));
	fprintf(f, "%llu\n", (unsigned long long)g.open);
	fclose(f);
}

int
main(int argc, char **argv)
{
	struct epoll_event	 evs[256];
	uint64_t		 now, setup_end, warm_end = 0, end = 0;
	int			 i, n, setup_failed = 0, established = 0;

	wsl_options(argc, argv);
	wsl_setup();

	now = wsl_now();
	setup_end = now + (uint64_t)((opt.timeout +
	    (double)opt.conns / 200.0) * 1e9);
	/* Handshake mode opens its slots at once; others pace the setup. */
	if (opt.mode == MODE_HANDSHAKE) {
		established = 1;
		warm_end = now + (uint64_t)(opt.warmup * 1e9);
		end = warm_end + (uint64_t)(opt.seconds * 1e9);
		for (i = 0; i < opt.conns; i++)
			wsl_conn_start(&g.conns[i]);
		if (opt.warmup == 0)
			wsl_window_start(now);
	}

	while (!g.stopping) {
		now = wsl_now();
		if (wsl_signalled) {
			g.stopping = 1;
			if (!established)
				setup_failed = 1;
			break;
		}
		if (!established) {
			while (g.started < opt.conns &&
			    g.pending < WSL_MAX_PENDING) {
				(void)wsl_conn_start(&g.conns[g.started]);
				g.started++;
			}
			if (g.started == opt.conns && g.pending == 0) {
				if (g.open < (uint64_t)opt.conns) {
					setup_failed = 1;
					break;
				}
				established = 1;
				warm_end = now + (uint64_t)(opt.warmup * 1e9);
				if (opt.mode == MODE_IDLE) {
					warm_end = now;
					wsl_ready();
				}
				end = warm_end + (uint64_t)(opt.seconds * 1e9);
				if (warm_end == now)
					wsl_window_start(now);
			} else if (now > setup_end) {
				wsl_error("setup: %llu of %d connections up",
				    (unsigned long long)g.open, opt.conns);
				setup_failed = 1;
				break;
			}
		} else {
			if (!g.measuring && now >= warm_end)
				wsl_window_start(now);
			if (now >= end)
				break;
			if (opt.mode != MODE_HANDSHAKE &&
			    g.open < (uint64_t)opt.conns && g.pending == 0 &&
			    g.open == 0) {
				wsl_error("every connection is gone");
				break;
			}
		}
		n = epoll_wait(g.ep, evs, 256, WSL_TICK_MS);
		if (n == -1 && errno != EINTR)
			wsl_die("epoll_wait: %s", strerror(errno));
		for (i = 0; i < n; i++)
			wsl_conn_event(evs[i].data.ptr, evs[i].events);
		if (g.pending > 0)
			wsl_sweep(wsl_now());
		/* Handshake slots that failed start over. */
		if (opt.mode == MODE_HANDSHAKE && !g.stopping)
			for (i = 0; i < opt.conns; i++)
				if (g.conns[i].c_state == ST_FREE)
					(void)wsl_conn_start(&g.conns[i]);
	}
	g.t_end = wsl_now();
	if (opt.cpu_pid)
		g.cpu_end = wsl_proc_cpu(opt.cpu_pid, &g.user_end);
	g.stopping = 1;
	/* Idle mode counts the connections that lasted the whole hold. */
	if (opt.mode == MODE_IDLE)
		g.messages = setup_failed ? 0 : g.open;
	for (i = 0; i < opt.conns; i++)
		wsl_conn_close(&g.conns[i], 1);
	if (setup_failed && g.errors == 0)
		wsl_error("setup interrupted");
	wsl_report(setup_failed);
	return setup_failed ? 1 : 0;
}
