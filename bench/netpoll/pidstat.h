/*
 * pidstat — what another process spent during a window: its CPU time
 * (utime + stime of all its threads, from /proc/PID/stat) and the system
 * calls its threads entered (one perf counter on the raw_syscalls:sys_enter
 * tracepoint per thread that exists at open time).
 *
 * Rules: ps_open() once, after the process has started all its threads
 * (threads created later are not counted); ps_sample() any number of
 * times from one thread; ps_close() releases the counters. Syscall
 * counting needs perf_event_open on tracepoints (root, or
 * perf_event_paranoid <= -1); without it syscalls reads as -1 and CPU
 * time still works. Benchmark harness code, not part of the runtime.
 */
#ifndef GC_BENCH_PIDSTAT_H
#define GC_BENCH_PIDSTAT_H

#include <stdint.h>
#include <sys/types.h>

#define PS_MAX_THREADS 64

struct pidstat {
	pid_t pid;
	int nfd;
	int fd[PS_MAX_THREADS];
};

struct ps_sample {
	double cpu_s;     /* utime + stime, seconds; < 0: unreadable */
	int64_t syscalls; /* sum over the counted threads; -1: not counted */
};

/* 0, or -errno when /proc/PID/stat is unreadable (no such process).
 * A failure to open the syscall counters is not an error (syscalls -1). */
int ps_open(struct pidstat *ps, pid_t pid);
void ps_sample(const struct pidstat *ps, struct ps_sample *out);
void ps_close(struct pidstat *ps);

#endif
