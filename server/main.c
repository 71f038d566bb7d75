/*
 * geecached: a memcached-compatible cache server on GeeCache's runtime.
 *
 * Start-up (which may allocate and may fail loudly): parse the options,
 * fit RLIMIT_NOFILE to the connection limit, make the store, the buffer
 * pool and the loops, listen, drop to -u's user, read -Y's users. Then the
 * main thread takes signals (blocked in every thread, taken with sigwait):
 * SIGHUP rereads the auth file, SIGUSR2 is ignored, and SIGINT, SIGTERM or
 * SIGUSR1 (memcached's graceful stop) stop gracefully: stop accepting,
 * finish what was read, flush every output (bounded by a drain time), exit
 * 0. SIGPIPE is ignored.
 *
 * -d forks before any thread exists: the parent waits until the child,
 * the server, listens, then exits 0, or with the status of a start-up that
 * failed, so that a script sees the failure. -P writes the server's pid
 * once it listens, and a clean stop removes the file.
 */
#include "server/srv.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define DRAIN_MS 5000

static int fit_fd_limit(long want)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -errno;
	if ((long)rl.rlim_cur >= want)
		return 0;
	if (rl.rlim_max != RLIM_INFINITY && (long)rl.rlim_max < want) {
		if (geteuid() == 0) {
			rl.rlim_max = (rlim_t)want;
			rl.rlim_cur = (rlim_t)want;
			if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
				return 0;
		}
		return -EMFILE;
	}
	rl.rlim_cur = (rlim_t)want;
	return setrlimit(RLIMIT_NOFILE, &rl) == 0 ? 0 : -errno;
}

static void srv_free(struct srv *s)
{
	if (s->pidfile_made && unlink(s->o.pidfile_str) != 0)
		fprintf(stderr, "geecached: cannot remove the pid file %s: %s\n",
		        s->o.pidfile_str, strerror(errno));
	np_group_destroy(&s->metrics);
	np_group_destroy(&s->group);
	np_workers_destroy(&s->workers); /* after the loops: no more ticks */
	srv_auth_destroy(&s->auth);
	bp_objpool_destroy(&s->parser_pool);
	cache_destroy(&s->cache);
	bp_pool_destroy(&s->pool);
	free(s->ctr);
	free(s->addr_buf);
}

/* --help, --help-markdown, --version: printed, and main returns 0; else -1. */
static int info_only(const struct srv_options *o)
{
	if (o->help)
		srv_options_help(stdout);
	else if (o->help_markdown)
		srv_options_markdown(stdout);
	else if (o->help_man)
		srv_options_man(stdout, GEECACHE_VERSION);
	else if (o->version)
		printf("geecached %s\n", GEECACHE_VERSION);
	else
		return -1;
	return 0;
}

/* The store and the network pool. 0, or main's exit status. */
static int store_start(struct srv *s)
{
	long fds = (long)s->o.conn_limit + SRV_RESERVED_FDS;
	if (fit_fd_limit(fds) < 0) {
		struct rlimit rl;
		getrlimit(RLIMIT_NOFILE, &rl);
		fprintf(stderr, "geecached: -c %lld needs %ld file descriptors; the limit is %llu "
		        "(raise it with ulimit -n, or lower -c)\n", (long long)s->o.conn_limit,
		        fds, (unsigned long long)rl.rlim_max);
		return 2;
	}
	if (s->o.memory_limit == 0) { /* -m auto */
		const char *pc = getenv("GEECACHE_PROC_CGROUP");
		const char *root = getenv("GEECACHE_CGROUP_ROOT");
		srv_memory_auto(pc ? pc : "/proc/self/cgroup", root ? root : "/sys/fs/cgroup",
		                &s->mem);
		s->o.memory_limit = s->mem.store_mib;
		if (s->o.max_item_size > s->o.memory_limit * 1024 * 1024 / 2) {
			fprintf(stderr, "geecached: -m auto chose %lld MiB (%s): Cannot set item "
			        "size limit higher than 1/2 of memory max (-I %lld)\n",
			        (long long)s->o.memory_limit, s->mem.source,
			        (long long)s->o.max_item_size);
			return 2;
		}
	}
	size_t seg = srv_seg_size((size_t)s->o.memory_limit * 1024 * 1024);
	s->pinned_max = srv_pinned_max((size_t)s->o.memory_limit * 1024 * 1024);
	if (s->mem.source && s->mem.limit_bytes > 0) {
		/* -m auto: half the reserve the container has beyond the store */
		int64_t rest = s->mem.limit_bytes - s->o.memory_limit * 1024 * 1024;
		s->pinned_max = rest > 2 * 1024 * 1024 ? (size_t)rest / 2 : 1024 * 1024;
	}
	s->seg_size = seg;
	struct cache_opts co = {
		.name = "store",
		.limit = (size_t)s->o.memory_limit * 1024 * 1024,
		.seg_size = seg,
		.max_item = (size_t)s->o.max_item_size,
		.pinned_max = s->pinned_max,
		/* -M: a write is refused when the store is full. One shard,
		 * so that "full" is the store's and not one shard's: with
		 * several, each shard's open segment can take writes after
		 * another shard has refused one (docs/server.md, "-M"). */
		.no_evict = s->o.disable_evictions != 0,
		.nshards = s->o.disable_evictions ? 1 : 0,
	};
	s->cache = cache_create(&co);
	if (!s->cache) {
		fprintf(stderr, "geecached: cannot create the store with -m %lld: %s\n",
		        (long long)s->o.memory_limit, strerror(errno));
		return 1;
	}
	struct bp_pool_opts po = {.name = "net"};
	s->pool = bp_pool_create(&po);
	s->parser_pool = s->pool ? bp_objpool_create(s->pool, "mc_parser", sizeof(struct mc_parser)) : NULL;
	if (!s->parser_pool) {
		fprintf(stderr, "geecached: out of memory at start\n");
		return 1;
	}
	return 0;
}

/* The memcached loops, listening. 0, or main's exit status. */
static int net_start(struct srv *s)
{
	s->proto = strcmp(s->o.protocol_str, "binary") == 0  ? MC_PROTO_BINARY
	           : strcmp(s->o.protocol_str, "ascii") == 0 ? MC_PROTO_TEXT
	                                                     : MC_PROTO_AUTO;
	enum np_backend be = NP_BACKEND_AUTO;
	np_backend_parse(s->o.backend_str, &be);
	struct np_opts no = {
		.nloops = (int)s->o.threads,
		.backend = be,
		.accept_mode = strcmp(s->o.accept_str, "reuseport") == 0
		                       ? NP_ACCEPT_REUSEPORT : NP_ACCEPT_HANDOFF,
		.yield_us = strcmp(s->o.yield_us_str, "auto") == 0        ? NP_YIELD_BACKEND
		            : strcmp(s->o.yield_us_str, "saturated") == 0 ? NP_YIELD_SATURATED
		            : strcmp(s->o.yield_us_str, "adaptive") == 0  ? NP_YIELD_ADAPTIVE
		                                                          : (uint32_t)s->o.yield_us,
		.pool = s->pool,
		.in_max = (size_t)s->o.max_item_size + SRV_IN_ROOM,
		.out_high = SRV_OUT_HIGH,
		.out_low = SRV_OUT_LOW,
		.idle_timeout_ms = (uint32_t)s->o.idle_timeout * 1000,
		.max_conns = (uint32_t)s->o.conn_limit,
		.listen_backlog = s->o.listen_backlog,
		/* memcached's words to a connection over its limit */
		.reject_msg = "ERROR Too many open connections\r\n",
		.udata = s,
	};
	s->group = np_group_create(&no, &srv_mc_handler);
	if (!s->group) {
		fprintf(stderr, "geecached: cannot start the %s backend: %s\n", s->o.backend_str,
		        strerror(errno));
		return 1;
	}
	s->ctr = calloc((size_t)np_group_nloops(s->group), sizeof(*s->ctr));
	if (!s->ctr) {
		fprintf(stderr, "geecached: out of memory at start\n");
		return 1;
	}
	if (*s->o.unix_socket_str) {
		/* -s: the unix socket alone, as memcached (no TCP) */
		s->port = 0;
		int r = np_group_listen_unix(s->group, s->o.unix_socket_str,
		                             (unsigned)s->o.unix_mask);
		if (r < 0) {
			fprintf(stderr, "geecached: cannot listen on unix socket %s: %s%s\n",
			        s->o.unix_socket_str, strerror(-r),
			        r == -EADDRINUSE ? " (a server is running there)"
			        : r == -EEXIST ? " (a file that is not a socket is there)" : "");
			return 1;
		}
		return 0;
	}
	/* Every address on one port: the first picks it (-p 0), the others
	 * take the same. */
	int port = (int)s->o.port;
	for (int i = 0; i < s->naddrs; i++) {
		int r = np_group_listen(s->group, s->addrs[i], (uint16_t)port);
		if (r < 0) {
			fprintf(stderr, "geecached: cannot listen on %s port %d: %s\n",
			        s->addrs[i], port, strerror(-r));
			return 1;
		}
		port = r;
	}
	s->port = port;
	return 0;
}

/* -l: split at its commas into s->addrs. 0, or main's exit status. */
static int addrs_parse(struct srv *s)
{
	s->addr_buf = strdup(s->o.listen_str);
	if (!s->addr_buf) {
		fprintf(stderr, "geecached: out of memory at start\n");
		return 1;
	}
	char *p = s->addr_buf;
	for (;;) {
		char *comma = strchr(p, ',');
		if (comma)
			*comma = '\0';
		if (!*p || s->naddrs == SRV_MAX_ADDRS) {
			fprintf(stderr, "geecached: bad value for --listen: '%s' (%s)\n",
			        s->o.listen_str, *p ? "too many addresses" : "an empty address");
			return 2;
		}
		s->addrs[s->naddrs++] = p;
		if (!comma)
			return 0;
		p = comma + 1;
	}
}

/* addr:port as a URL or the start line writes it: IPv6 in brackets. */
static void print_addr(const char *addr, int port)
{
	if (strchr(addr, ':') && addr[0] != '[')
		printf("[%s]:%d", addr, port);
	else
		printf("%s:%d", addr, port);
}

static const char *metrics_addr(const struct srv *s)
{
	return *s->o.metrics_listen_str ? s->o.metrics_listen_str : s->addrs[0];
}

/* The /metrics listener, when asked for. 0, or main's exit status. Its
 * connections get SRV_HTTP_HEAD_MS for a request head and the oldest
 * gives way to a new one when full (http.c), so netpoll's own idle
 * timeout is only a backstop. */
static int metrics_start(struct srv *s)
{
	if (!s->o.metrics_port)
		return 0;
	struct np_opts mo = {.nloops = 1, .backend = NP_BACKEND_EPOLL, .pool = s->pool,
	                     .max_conns = SRV_HTTP_MAX_CONNS, .in_max = 64 * 1024,
	                     .out_high = SRV_HTTP_OUT_HIGH,
	                     /* the memcached loops give the shared pool's
	                      * memory back when they are quiet; a release
	                      * after each scrape of a busy server would only
	                      * hold the pool's lock against them */
	                     .idle_trim_ms = -1,
	                     .idle_timeout_ms = SRV_HTTP_HEAD_MS, .udata = s};
	s->metrics = np_group_create(&mo, &srv_http_handler);
	s->metrics_port = s->metrics ? np_group_listen(s->metrics, metrics_addr(s),
	                                               (uint16_t)s->o.metrics_port) : -ENOMEM;
	if (s->metrics_port < 0) {
		fprintf(stderr, "geecached: cannot listen for /metrics on %s:%lld: %s\n",
		        metrics_addr(s), (long long)s->o.metrics_port, strerror(-s->metrics_port));
		return 1;
	}
	return 0;
}

/* -P: the pid, written once listening (before -u, as memcached: the
 * file's directory may be root's) through a temporary file renamed into
 * place, so that a reader never sees it empty. 0, or main's exit status
 * (memcached carries on without it; a supervisor reading it would not
 * find the server). */
static int pidfile_write(struct srv *s)
{
	const char *path = s->o.pidfile_str;
	if (!*path)
		return 0;
	char tmp[4096];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		fprintf(stderr, "geecached: -P %s: path too long\n", path);
		return 1;
	}
	FILE *f = fopen(tmp, "w");
	if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0 ||
	    rename(tmp, path) != 0) {
		fprintf(stderr, "geecached: cannot write the pid file %s: %s\n", path,
		        strerror(errno));
		return 1;
	}
	s->pidfile_made = true;
	return 0;
}

/* -d, before any thread exists: forks. The parent waits for the child to
 * say it listens (daemon_ready) and exits 0, or exits with the child's
 * status when the child ends first (a start-up error, said on stderr);
 * it never returns. The child, in a session of its own, gets the write
 * end of the pipe to pass to daemon_ready. Without -d: -1. */
static int daemon_start(const struct srv *s)
{
	int fds[2];
	if (!s->o.daemon)
		return -1;
	if (pipe(fds) != 0) {
		fprintf(stderr, "geecached: -d: pipe: %s\n", strerror(errno));
		exit(1);
	}
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "geecached: -d: fork: %s\n", strerror(errno));
		exit(1);
	}
	if (pid > 0) {
		char b;
		ssize_t n;
		int st;
		close(fds[1]);
		do
			n = read(fds[0], &b, 1);
		while (n < 0 && errno == EINTR);
		if (n == 1)
			_exit(0);
		if (waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st))
			_exit(WEXITSTATUS(st));
		_exit(1);
	}
	close(fds[0]);
	setsid();
	return fds[1];
}

/* -d, once listening and announced: stdin and stdout (and stderr, unless
 * -v: memcached's rule) become /dev/null, so that the caller's pipes
 * close, and the parent is told to exit 0. */
static void daemon_ready(const struct srv *s, int fd)
{
	if (fd < 0)
		return;
	int null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		if (!s->o.verbose)
			dup2(null, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
	ssize_t n;
	do
		n = write(fd, "1", 1);
	while (n < 0 && errno == EINTR);
	close(fd);
}

/* -u: after binding, become that user (its groups, then its gid, then its
 * uid; memcached's order), and check that root cannot be had back. As root
 * without -u: a warning. 0, or main's exit status. */
static int drop_privileges(struct srv *s)
{
	const char *user = s->o.user_str;
	if (geteuid() != 0) {
		if (*user)
			fprintf(stderr, "geecached: -u %s ignored: not started as root\n", user);
		return 0;
	}
	if (!*user) {
		fprintf(stderr, "geecached: warning: running as root without -u: a flaw in "
		        "the server, reachable by anyone who can connect, would run with "
		        "root's rights over the whole machine; start it with -u USER "
		        "(e.g. -u nobody) or as an unprivileged user\n");
		return 0;
	}
	errno = 0;
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		fprintf(stderr, "geecached: -u %s: no such user%s%s\n", user, errno ? ": " : "",
		        errno ? strerror(errno) : "");
		return 2;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
	    setuid(pw->pw_uid) != 0) {
		fprintf(stderr, "geecached: cannot become user %s: %s\n", user, strerror(errno));
		return 1;
	}
	if (pw->pw_uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
		fprintf(stderr, "geecached: could regain root after -u %s; stopping\n", user);
		return 1;
	}
	return 0;
}

/* -Y: the users, read as the user we run as (after -u, as memcached does),
 * so that SIGHUP can read the file again. 0, or main's exit status. */
static int auth_start(struct srv *s)
{
	if (!*s->o.auth_file_str)
		return 0;
	return srv_auth_create(s->o.auth_file_str, &s->auth, stderr) < 0 ? 2 : 0;
}

/* SIGHUP: reread the auth file; a bad one keeps the users we have. */
static void reload(struct srv *s)
{
	if (!s->auth) {
		fprintf(stderr, "geecached: SIGHUP: no -Y auth file, nothing to reload\n");
		return;
	}
	if (srv_auth_reload(s->auth, stderr) == 0)
		fprintf(stderr, "geecached: SIGHUP: reloaded %s (%zu users)\n",
		        s->o.auth_file_str, srv_auth_count(s->auth));
	else
		fprintf(stderr, "geecached: SIGHUP: keeping the previous users of %s\n",
		        s->o.auth_file_str);
}

/* One line on stdout says where we are (tests read it for port 0): every
 * -l address with the port (the first as before: tests and scripts match
 * "listening on 127.0.0.1:PORT"), or unix:PATH for -s. */
static void announce(const struct srv *s)
{
	printf("geecached %s listening on ", GEECACHE_VERSION);
	if (*s->o.unix_socket_str) {
		printf("unix:%s", s->o.unix_socket_str);
	} else {
		for (int i = 0; i < s->naddrs; i++) {
			printf("%s", i ? ", " : "");
			print_addr(s->addrs[i], s->port);
		}
	}
	printf(" (%s, %d loops, %lld MiB", np_backend_name(np_group_backend(s->group)),
	       np_group_nloops(s->group), (long long)s->o.memory_limit);
	if (s->mem.source && s->mem.limit_bytes)
		printf(" by -m auto: %s %lld MiB", s->mem.source,
		       (long long)(s->mem.limit_bytes >> 20));
	else if (s->mem.source)
		printf(" by -m auto: %s", s->mem.source);
	printf(")");
	if (s->auth)
		printf(", authentication required");
	if (s->metrics) {
		printf(", metrics on http://");
		print_addr(metrics_addr(s), s->metrics_port);
		printf("/metrics");
	}
	printf("\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static struct srv S;
	struct srv *s = &S;
	int r = srv_options_parse(&s->o, argc, argv, stderr);
	if (r)
		return r;
	if (info_only(&s->o) == 0)
		return 0;
	int ready_fd = daemon_start(s);
	atomic_store(&s->verbosity, (int)s->o.verbose);
	s->started = time(NULL);
	pthread_mutex_init(&s->detail.mu, NULL);
	pthread_mutex_init(&s->base.mu, NULL);

	/* Every thread made from here on inherits this mask; the main thread
	 * takes the signals with sigwait. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if ((r = addrs_parse(s)) || (r = store_start(s)) || (r = srv_sweep_start(s)) ||
	    (r = net_start(s)) ||
	    (r = metrics_start(s)) || (r = pidfile_write(s)) ||
	    (r = drop_privileges(s)) || (r = auth_start(s))) {
		srv_free(s);
		return r;
	}
	if (np_group_start(s->group) < 0 || (s->metrics && np_group_start(s->metrics) < 0)) {
		fprintf(stderr, "geecached: cannot start threads\n");
		srv_free(s);
		return 1;
	}
	np_loop_post(np_group_loop(s->group, 0), srv_sweep_timer, s);
	if (s->metrics)
		np_loop_post(np_group_loop(s->metrics, 0), srv_http_start_timers, s);
	announce(s);
	daemon_ready(s, ready_fd);

	int sig = 0;
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			reload(s);
		} else if (sig == SIGUSR2) {
			if (s->o.verbose)
				fprintf(stderr, "geecached: SIGUSR2 ignored\n");
		} else {
			break; /* INT, TERM, USR1 */
		}
	}
	if (s->o.verbose)
		fprintf(stderr, "geecached: %s, stopping\n", strsignal(sig));
	np_group_stop(s->group, DRAIN_MS);
	if (s->metrics)
		np_group_stop(s->metrics, 1000);
	srv_free(s);
	return 0;
}
