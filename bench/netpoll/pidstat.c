/* pidstat — another process's CPU time and syscalls (see pidstat.h). */
#include "pidstat.h"

#include <dirent.h>
#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The tracepoint id of raw_syscalls:sys_enter, or -1. */
static long tracepoint_id(void)
{
	static const char *const paths[] = {
		"/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
		"/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id",
	};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		FILE *f = fopen(paths[i], "r");
		long id = -1;
		if (!f)
			continue;
		if (fscanf(f, "%ld", &id) != 1)
			id = -1;
		fclose(f);
		if (id >= 0)
			return id;
	}
	return -1;
}

static double cpu_seconds(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* Fields after the command name (which may hold spaces and parens):
	 * state is field 3, utime 14, stime 15. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	unsigned long ut = 0, st = 0;
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

int ps_open(struct pidstat *ps, pid_t pid)
{
	memset(ps, 0, sizeof(*ps));
	ps->pid = pid;
	if (cpu_seconds(pid) < 0)
		return -ESRCH;
	long id = tracepoint_id();
	if (id < 0)
		return 0;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) && ps->nfd < PS_MAX_THREADS) {
		if (e->d_name[0] == '.')
			continue;
		struct perf_event_attr a = {
			.type = PERF_TYPE_TRACEPOINT,
			.size = sizeof(a),
			.config = (uint64_t)id,
			.sample_period = 0,
		};
		long fd = syscall(SYS_perf_event_open, &a, atoi(e->d_name), -1, -1, 0);
		if (fd < 0) {
			ps_close(ps); /* all threads or none */
			ps->pid = pid;
			break;
		}
		ps->fd[ps->nfd++] = (int)fd;
	}
	closedir(d);
	return 0;
}

void ps_sample(const struct pidstat *ps, struct ps_sample *out)
{
	out->cpu_s = cpu_seconds(ps->pid);
	out->syscalls = ps->nfd ? 0 : -1;
	for (int i = 0; i < ps->nfd; i++) {
		uint64_t v = 0;
		if (read(ps->fd[i], &v, sizeof(v)) != (ssize_t)sizeof(v)) {
			out->syscalls = -1;
			return;
		}
		out->syscalls += (int64_t)v;
	}
}

void ps_close(struct pidstat *ps)
{
	for (int i = 0; i < ps->nfd; i++)
		close(ps->fd[i]);
	ps->nfd = 0;
}
