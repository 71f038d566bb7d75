/*
 * The backends, as one table. A row names a backend (np_backend_name,
 * np_backend_parse), points at its ops and at what says whether it can run
 * here, and ranks it for NP_BACKEND_AUTO. Every backend has a row in every
 * build, so that its names parse everywhere; a build without it has NULL
 * ops there, and choosing it fails. Adding a backend is one row here plus
 * its own file (and its value in enum np_backend).
 */
#include "netpoll/np_internal.h"

#include <stdlib.h>
#include <string.h>

struct backend_row {
	enum np_backend id;
	const char *name;  /* np_backend_name */
	const char *alias; /* np_backend_parse takes it too; NULL: none */
	/* NP_BACKEND_AUTO takes the row of lowest rank whose available()
	 * says yes; 0: never chosen by AUTO. */
	unsigned auto_rank;
	const struct np_backend_ops *ops; /* NULL: not in this build */
	bool (*available)(void);          /* may probe the kernel, once */
};

static bool built_in(void) { return true; }

static const struct backend_row rows[] = {
#ifdef GEECACHE_HAVE_URING
	{NP_BACKEND_URING, "io_uring", "uring", 1, &np__uring_ops, np__uring_usable},
#else
	{NP_BACKEND_URING, "io_uring", "uring", 1, NULL, NULL},
#endif
#if defined(NP_HAVE_KQUEUE) && defined(GEECACHE_HAVE_LIBKQUEUE)
	/* Linux: libkqueue's emulation, over epoll. Only when asked for. */
	{NP_BACKEND_KQUEUE, "kqueue", NULL, 0, &np__kqueue_ops, built_in},
#elif defined(NP_HAVE_KQUEUE)
	{NP_BACKEND_KQUEUE, "kqueue", NULL, 2, &np__kqueue_ops, built_in},
#else
	{NP_BACKEND_KQUEUE, "kqueue", NULL, 2, NULL, NULL},
#endif
#ifdef NP_HAVE_EPOLL
	{NP_BACKEND_EPOLL, "epoll", NULL, 3, &np__epoll_ops, built_in},
#else
	{NP_BACKEND_EPOLL, "epoll", NULL, 3, NULL, NULL},
#endif
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))

static const struct backend_row *row_of(enum np_backend b)
{
	for (size_t i = 0; i < NROWS; i++)
		if (rows[i].id == b)
			return &rows[i];
	return NULL;
}

const char *np_backend_name(enum np_backend b)
{
	const struct backend_row *r = row_of(b);
	return r ? r->name : "auto";
}

int np_backend_parse(const char *name, enum np_backend *out)
{
	if (strcmp(name, "auto") == 0) {
		*out = NP_BACKEND_AUTO;
		return 0;
	}
	for (size_t i = 0; i < NROWS; i++) {
		const struct backend_row *r = &rows[i];
		if (strcmp(name, r->name) == 0 || (r->alias && strcmp(name, r->alias) == 0)) {
			*out = r->id;
			return 0;
		}
	}
	return -EINVAL;
}

static bool row_runs(const struct backend_row *r)
{
	return r->ops && r->available();
}

/* The available row of lowest rank for AUTO; NULL: none. */
static const struct backend_row *auto_row(void)
{
	const struct backend_row *best = NULL;
	for (unsigned rank = 1; !best && rank <= NROWS; rank++)
		for (size_t i = 0; i < NROWS && !best; i++)
			if (rows[i].auto_rank == rank && row_runs(&rows[i]))
				best = &rows[i];
	return best;
}

const struct np_backend_ops *np__backend_pick(enum np_backend *b)
{
	const char *env = getenv("GEECACHE_BACKEND");
	if (env && *env) {
		enum np_backend e;
		if (np_backend_parse(env, &e) == 0)
			*b = e;
	}
	const struct backend_row *r = *b == NP_BACKEND_AUTO ? auto_row() : row_of(*b);
	if (!r || !row_runs(r))
		return NULL;
	*b = r->id;
	return r->ops;
}
