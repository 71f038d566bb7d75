/*
 * Cross-thread posts: a mutex-guarded list per loop and a wake-up for the
 * loop's wait: an eventfd (epoll, io_uring), or what the backend brings
 * (kqueue: EVFILT_USER on the kqueue itself; np_backend_ops.wake_open).
 * Any thread may post; the loop runs the posts in order on its own thread.
 * Once the loop has stopped, posts are refused (-ESHUTDOWN) and what was
 * posted before runs at its exit.
 */
#define _GNU_SOURCE
#include "netpoll/np_internal.h"

#include <errno.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

void np__wake(struct np_loop *l)
{
	if (atomic_exchange(&l->wake_pending, 1))
		return;
	if (l->ops->wake) {
		l->ops->wake(l);
		return;
	}
	uint64_t one = 1;
	ssize_t r = write(l->wake_fd, &one, sizeof(one));
	(void)r; /* the counter can only overflow after 2^64 wakes */
}

int np_loop_post(struct np_loop *l, void (*fn)(void *), void *arg)
{
	struct np_post *p = bp_objpool_get(l->g->post_pool);
	if (!p)
		return -ENOMEM;
	p->fn = fn;
	p->arg = arg;
	pthread_mutex_lock(&l->post_lock);
	if (l->post_closed) {
		pthread_mutex_unlock(&l->post_lock);
		bp_objpool_put(l->g->post_pool, &p);
		return -ESHUTDOWN;
	}
	if (l->post_tail)
		l->post_tail->next = p;
	else
		l->post_head = p;
	l->post_tail = p;
	pthread_mutex_unlock(&l->post_lock);
	np__wake(l);
	return 0;
}

static void posts_run(struct np_loop *l)
{
	pthread_mutex_lock(&l->post_lock);
	struct np_post *p = l->post_head;
	l->post_head = l->post_tail = NULL;
	pthread_mutex_unlock(&l->post_lock);
	while (p) {
		struct np_post *next = p->next;
		p->fn(p->arg);
		np__ctr(&l->st.posts, 1);
		bp_objpool_put(l->g->post_pool, &p);
		p = next;
	}
}

void np__wake_done(struct np_loop *l)
{
	/* Reset before taking the list: a post racing with us either sees 0
	 * and wakes us again, or appended before we take the list. */
	atomic_store(&l->wake_pending, 0);
	posts_run(l);
}

void np__wake_drain(struct np_loop *l)
{
	uint64_t v;
	ssize_t r = read(l->wake_fd, &v, sizeof(v));
	(void)r;
	np__wake_done(l);
}

int np__posts_init(struct np_loop *l)
{
	pthread_mutex_init(&l->post_lock, NULL);
	l->wake_fd = -1;
	if (l->ops->wake_open)
		return l->ops->wake_open(l);
#ifdef __linux__
	l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	return l->wake_fd < 0 ? -errno : 0;
#else
	return -ENOSYS; /* no eventfd: every backend here brings its own */
#endif
}

void np__posts_close(struct np_loop *l)
{
	/* Refuse further posts, then run what was posted before. */
	pthread_mutex_lock(&l->post_lock);
	l->post_closed = true;
	pthread_mutex_unlock(&l->post_lock);
	posts_run(l);
}

void np__posts_deinit(struct np_loop *l)
{
	posts_run(l);
	if (l->wake_fd > 0)
		close(l->wake_fd);
	pthread_mutex_destroy(&l->post_lock);
}
