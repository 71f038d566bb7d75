/* The auth file's users: reading, reloading, constant-time checks. See
 * auth.h. */
#include "server/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct srv_auth_entry {
	const char *user, *pass;
	size_t ulen, plen;
};

/* One file's worth: the entries point into text. */
struct srv_auth_table {
	size_t n;
	size_t text_len; /* text holds '\0's where lines ended */
	char *text;
	struct srv_auth_entry e[];
};

struct srv_auth {
	pthread_rwlock_t mu;
	struct srv_auth_table *t; /* under mu */
	char *path;
};

static void table_free(struct srv_auth_table **t)
{
	if (!*t)
		return;
	/* Passwords do not linger in freed memory. */
	struct srv_auth_table *p = *t;
	if (p->text)
		explicit_bzero(p->text, p->text_len);
	free(p->text);
	free(p);
	*t = NULL;
}

/* Reads the whole file, checking what it is and who may read it. */
static int read_file(const char *path, char **out, FILE *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		int e = errno;
		fprintf(err, "geecached: cannot open the auth file %s: %s\n", path, strerror(e));
		return -e;
	}
	struct stat st;
	int r = 0;
	if (fstat(fd, &st) != 0) {
		r = -errno;
		fprintf(err, "geecached: cannot stat the auth file %s: %s\n", path, strerror(-r));
	} else if (!S_ISREG(st.st_mode)) {
		r = -EINVAL;
		fprintf(err, "geecached: the auth file %s is not a regular file\n", path);
	} else if (st.st_mode & (S_IROTH | S_IWOTH | S_IWGRP)) {
		r = -EACCES;
		fprintf(err, "geecached: the auth file %s is %s by others (mode %03o); "
		        "refusing it: chmod 600 %s (or 640 for a group of readers)\n", path,
		        st.st_mode & S_IROTH ? "readable" : "writable",
		        (unsigned)(st.st_mode & 0777), path);
	} else if ((uint64_t)st.st_size > SRV_AUTH_FILE_MAX) {
		r = -EFBIG;
		fprintf(err, "geecached: the auth file %s is over %u bytes\n", path,
		        SRV_AUTH_FILE_MAX);
	}
	char *buf = r ? NULL : malloc((size_t)st.st_size + 1);
	if (!r && !buf)
		r = -ENOMEM;
	size_t got = 0;
	while (!r && got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			fprintf(err, "geecached: cannot read the auth file %s: %s\n", path,
			        strerror(-r));
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	if (r) {
		free(buf);
		return r;
	}
	buf[got] = '\0';
	*out = buf;
	return 0;
}

/* Parses text (taken) into a table: `user:password` lines, split at the
 * first ':', a trailing '\r' dropped, empty lines skipped (memcached's
 * format). */
static int parse(const char *path, char *text, struct srv_auth_table **out, FILE *err)
{
	size_t lines = 1;
	for (const char *p = text; *p; p++)
		lines += *p == '\n';
	struct srv_auth_table *t = calloc(1, sizeof(*t) + lines * sizeof(t->e[0]));
	if (!t) {
		free(text);
		return -ENOMEM;
	}
	t->text = text;
	t->text_len = strlen(text);
	size_t lineno = 0;
	for (char *line = text; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		lineno++;
		size_t len = strlen(line);
		if (len && line[len - 1] == '\r')
			line[--len] = '\0';
		char *colon = memchr(line, ':', len);
		const char *why = NULL;
		if (len == 0)
			why = NULL;
		else if (!colon || colon == line)
			why = "not user:password";
		else if ((size_t)(colon - line) > SRV_AUTH_USER_MAX)
			why = "user name too long";
		else if (len - (size_t)(colon - line) - 1 > SRV_AUTH_PASS_MAX)
			why = "password too long";
		if (why) {
			fprintf(err, "geecached: the auth file %s, line %zu: %s\n", path, lineno, why);
			table_free(&t);
			return -EBADMSG;
		}
		if (len) {
			struct srv_auth_entry *e = &t->e[t->n++];
			e->user = line;
			e->ulen = (size_t)(colon - line);
			e->pass = colon + 1;
			e->plen = len - e->ulen - 1;
		}
		line = nl ? nl + 1 : NULL;
	}
	if (t->n == 0) {
		fprintf(err, "geecached: the auth file %s has no user:password line\n", path);
		table_free(&t);
		return -EBADMSG;
	}
	*out = t;
	return 0;
}

static int load(const char *path, struct srv_auth_table **out, FILE *err)
{
	char *text;
	int r = read_file(path, &text, err);
	return r ? r : parse(path, text, out, err);
}

int srv_auth_create(const char *path, struct srv_auth **out, FILE *err)
{
	struct srv_auth *a = calloc(1, sizeof(*a));
	if (!a || !(a->path = strdup(path))) {
		free(a);
		fprintf(err, "geecached: out of memory at start\n");
		return -ENOMEM;
	}
	pthread_rwlock_init(&a->mu, NULL);
	int r = load(path, &a->t, err);
	if (r) {
		srv_auth_destroy(&a);
		return r;
	}
	*out = a;
	return 0;
}

int srv_auth_reload(struct srv_auth *a, FILE *err)
{
	struct srv_auth_table *t = NULL;
	int r = load(a->path, &t, err);
	if (r)
		return r;
	pthread_rwlock_wrlock(&a->mu);
	struct srv_auth_table *old = a->t;
	a->t = t;
	pthread_rwlock_unlock(&a->mu);
	table_free(&old);
	return 0;
}

/* Equal, in time that depends on want's length alone. */
static bool ct_equal(const char *got, size_t glen, const char *want, size_t wlen)
{
	unsigned diff = glen != wlen;
	for (size_t i = 0; i < wlen; i++) {
		unsigned char g = i < glen ? (unsigned char)got[i] : 0;
		diff |= g ^ (unsigned char)want[i];
	}
	return diff == 0;
}

bool srv_auth_check(struct srv_auth *a, const char *user, size_t ulen,
                    const char *pass, size_t plen)
{
	bool ok = false;
	pthread_rwlock_rdlock(&a->mu);
	const struct srv_auth_table *t = a->t;
	for (size_t i = 0; i < t->n; i++) {
		/* Both halves always compared, and every entry: no early out
		 * that would time which user exists. */
		bool u = ct_equal(user, ulen, t->e[i].user, t->e[i].ulen);
		bool p = ct_equal(pass, plen, t->e[i].pass, t->e[i].plen);
		ok |= u & p;
	}
	pthread_rwlock_unlock(&a->mu);
	return ok;
}

size_t srv_auth_count(struct srv_auth *a)
{
	pthread_rwlock_rdlock(&a->mu);
	size_t n = a->t ? a->t->n : 0;
	pthread_rwlock_unlock(&a->mu);
	return n;
}

void srv_auth_destroy(struct srv_auth **a)
{
	if (!*a)
		return;
	table_free(&(*a)->t);
	pthread_rwlock_destroy(&(*a)->mu);
	free((*a)->path);
	free(*a);
	*a = NULL;
}
