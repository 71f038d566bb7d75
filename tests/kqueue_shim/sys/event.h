/* Declarations for the FreeBSD compile check of netpoll only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_SYS_EVENT_H
#define GEECACHE_SHIM_SYS_EVENT_H

#include <stdint.h>

struct timespec;

struct kevent {
	uintptr_t ident;     /* descriptor, for the socket filters */
	short filter;        /* EVFILT_* */
	unsigned short flags; /* EV_* */
	unsigned int fflags; /* filter flags; the socket error with EV_EOF */
	int64_t data;        /* filter data; the errno with EV_ERROR */
	void *udata;         /* returned as given */
	uint64_t ext[4];
};

_Static_assert(sizeof(struct kevent) == 64, "FreeBSD 12+ struct kevent on LP64");

#define EVFILT_READ (-1)
#define EVFILT_WRITE (-2)
#define EVFILT_USER (-11)

#define EV_ADD 0x0001     /* add or update; implies enable */
#define EV_DELETE 0x0002
#define EV_ENABLE 0x0004
#define EV_DISABLE 0x0008
#define EV_ONESHOT 0x0010
#define EV_CLEAR 0x0020   /* edge-triggered: kqueue.c does not use it */
#define EV_RECEIPT 0x0040
#define EV_DISPATCH 0x0080
#define EV_ERROR 0x4000   /* returned: data holds the errno */
#define EV_EOF 0x8000     /* returned */

/* EVFILT_USER's fflags */
#define NOTE_TRIGGER 0x01000000

#define EV_SET(kevp, a, b, c, d, e, f)                                       \
	do {                                                                  \
		*(kevp) = (struct kevent){.ident = (a), .filter = (b),        \
		                          .flags = (c), .fflags = (d),        \
		                          .data = (e), .udata = (f)};         \
	} while (0)

int kqueue(void);
int kevent(int kq, const struct kevent *changelist, int nchanges,
           struct kevent *eventlist, int nevents,
           const struct timespec *timeout);

#endif
