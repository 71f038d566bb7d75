/*
 * A small HTTP/1.1 handler on netpoll's handler API, for Prometheus:
 * GET /metrics answers the text exposition; any other path is 404, any
 * other method 405. Keep-alive unless the client says "Connection: close"
 * or speaks HTTP/1.0. A request head over 8 KiB gets 431 and a close.
 * Request bodies are not expected (a Content-Length body is skipped).
 *
 * Lock-out: a connection has SRV_HTTP_HEAD_MS from its open (or its last
 * answer) to send a whole request head, and a new connection that makes
 * the listener full closes the one whose head is oldest (srv.h), so idle
 * and half-open connections cannot keep a scrape out.
 */
#include "server/srv.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD_MAX 8192

static int reply(struct bp_chain *out, int code, const char *reason,
                 const char *ctype, struct bp_chain *body, bool keep)
{
	char hdr[256];
	int n = snprintf(hdr, sizeof(hdr),
	                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	                 "Connection: %s\r\n\r\n",
	                 code, reason, ctype, body ? bp_chain_len(body) : 0,
	                 keep ? "keep-alive" : "close");
	int r = bp_chain_append(out, hdr, (size_t)n);
	if (r == 0 && body)
		bp_chain_append_chain(out, body);
	return r;
}

static bool has_token(const char *head, size_t len, const char *name, const char *val)
{
	/* Case-insensitive search for "name:" followed by a value containing val. */
	size_t nl = strlen(name), vl = strlen(val);
	for (size_t i = 0; i + nl < len; i++) {
		if ((i == 0 || head[i - 1] == '\n') && strncasecmp(head + i, name, nl) == 0 &&
		    head[i + nl] == ':') {
			const char *p = head + i + nl + 1, *end = memchr(p, '\n', len - (size_t)(p - head));
			if (!end)
				end = head + len;
			for (; p + vl <= end; p++)
				if (strncasecmp(p, val, vl) == 0)
					return true;
		}
	}
	return false;
}

/* ---- connection table ------------------------------------------------- */

static struct srv *srv_of(const struct np_conn *c)
{
	return np_group_udata(np_loop_group(np_conn_loop(c)));
}

/* The entry of c (its udata): index + 1, 0 for none. */
static size_t slot_of(const struct np_conn *c)
{
	return (size_t)(uintptr_t)np_conn_udata(c);
}

static int http_open(struct np_conn *c)
{
	struct srv_http_conns *t = &srv_of(c)->http;
	uint64_t now = np_loop_now(np_conn_loop(c));
	if (t->n >= SRV_HTTP_MAX_CONNS - 1) {
		/* Full but for this one: the oldest head gives way. */
		size_t old = SRV_HTTP_MAX_CONNS;
		for (size_t i = 0; i < SRV_HTTP_MAX_CONNS; i++)
			if (t->e[i].c && (old == SRV_HTTP_MAX_CONNS || t->e[i].since < t->e[old].since))
				old = i;
		if (old < SRV_HTTP_MAX_CONNS) {
			t->evicted++;
			np_conn_close(t->e[old].c, false); /* http_close frees the entry */
		}
	}
	for (size_t i = 0; i < SRV_HTTP_MAX_CONNS; i++) {
		if (!t->e[i].c) {
			t->e[i].c = c;
			t->e[i].since = now;
			t->n++;
			np_conn_set_udata(c, (void *)(uintptr_t)(i + 1));
			return 0;
		}
	}
	return -EMFILE; /* cannot be: netpoll admits SRV_HTTP_MAX_CONNS */
}

static void http_close(struct np_conn *c, int err)
{
	(void)err;
	size_t i = slot_of(c);
	if (!i)
		return;
	struct srv_http_conns *t = &srv_of(c)->http;
	t->e[i - 1].c = NULL;
	t->n--;
	np_conn_set_udata(c, NULL);
}

/* Every second on the metrics loop: close what is late with its head. */
static void head_sweep(void *arg)
{
	struct srv *s = arg;
	struct srv_http_conns *t = &s->http;
	uint64_t now = np_loop_now(np_group_loop(s->metrics, 0));
	for (size_t i = 0; i < SRV_HTTP_MAX_CONNS; i++) {
		if (t->e[i].c && now - t->e[i].since >= SRV_HTTP_HEAD_MS) {
			t->timed_out++;
			np_conn_close(t->e[i].c, false);
		}
	}
}

void srv_http_start_timers(void *arg)
{
	struct srv *s = arg;
	np_timer_add(np_group_loop(s->metrics, 0), 1000, 1000, head_sweep, s);
}

/* ---- requests --------------------------------------------------------- */

static ssize_t http_data(struct np_conn *c, struct bp_chain *in)
{
	struct srv *s = srv_of(c);
	struct bp_chain *out = np_conn_out(c);
	for (;;) {
		ssize_t end = bp_chain_find2(in, 0, HEAD_MAX, '\r', '\n');
		/* The head ends at the first empty line. */
		size_t from = 0;
		ssize_t hend = -1;
		while (end >= 0) {
			if ((size_t)end == from) {
				hend = end;
				break;
			}
			from = (size_t)end + 2;
			end = bp_chain_find2(in, from, HEAD_MAX, '\r', '\n');
		}
		if (hend < 0) {
			if (bp_chain_len(in) >= HEAD_MAX) {
				reply(out, 431, "Request Header Fields Too Large", "text/plain", NULL, false);
				return -EMSGSIZE;
			}
			return 0;
		}
		size_t hlen = (size_t)hend + 2;
		char head[HEAD_MAX];
		const char *h = bp_chain_view(in, 0, hlen, head);
		bool v10 = false, keep = true;
		const char *sp1 = memchr(h, ' ', hlen);
		const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', hlen - (size_t)(sp1 + 1 - h)) : NULL;
		if (!sp1 || !sp2) {
			reply(out, 400, "Bad Request", "text/plain", NULL, false);
			return -EBADMSG;
		}
		v10 = strncmp(sp2 + 1, "HTTP/1.0", 8) == 0;
		if (v10 || has_token(h, hlen, "Connection", "close"))
			keep = false;
		size_t body = 0;
		for (size_t i = 0; i + 15 < hlen; i++) {
			if ((i == 0 || h[i - 1] == '\n') && strncasecmp(h + i, "Content-Length:", 15) == 0) {
				body = strtoul(h + i + 15, NULL, 10);
				break;
			}
		}
		if (body > HEAD_MAX) {
			reply(out, 413, "Payload Too Large", "text/plain", NULL, false);
			return -EMSGSIZE;
		}
		if (bp_chain_len(in) < hlen + body)
			return (ssize_t)(hlen + body);
		size_t mlen = (size_t)(sp1 - h), plen = (size_t)(sp2 - sp1 - 1);
		const char *path = sp1 + 1;
		int r;
		if (mlen != 3 || memcmp(h, "GET", 3) != 0) {
			r = reply(out, 405, "Method Not Allowed", "text/plain", NULL, keep);
		} else if (plen == 8 && memcmp(path, "/metrics", 8) == 0) {
			struct bp_chain b;
			bp_chain_init(&b, np_group_pool(np_loop_group(np_conn_loop(c))));
			r = srv_metrics(s, &b);
			if (r == 0)
				r = reply(out, 200, "OK", "text/plain; version=0.0.4", &b, keep);
			bp_chain_deinit(&b);
		} else {
			struct bp_chain b;
			bp_chain_init(&b, np_group_pool(np_loop_group(np_conn_loop(c))));
			r = bp_chain_append(&b, "not found\n", 10);
			if (r == 0)
				r = reply(out, 404, "Not Found", "text/plain", &b, keep);
			bp_chain_deinit(&b);
		}
		bp_chain_skip(in, hlen + body);
		size_t slot = slot_of(c);
		if (slot) /* answered: the next head has its own time */
			s->http.e[slot - 1].since = np_loop_now(np_conn_loop(c));
		if (r < 0)
			return r;
		if (!keep)
			return -ECONNRESET; /* close once the answer is out */
		if (np_conn_out_full(c)) {
			/* A pipeliner that does not read: answer the rest
			 * once it has read these (as mc.c does). */
			np_conn_yield(c);
			return 0;
		}
	}
}

const struct np_handler srv_http_handler = {
	.on_open = http_open,
	.on_data = http_data,
	.on_close = http_close,
};
