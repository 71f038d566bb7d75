/*
 * -m auto: the store's size from the container's memory limit.
 *
 * The limit is the smallest memory.max (cgroup v2) of the process's cgroup
 * and its ancestors, or memory.limit_in_bytes of its memory cgroup (v1).
 * The store gets that limit minus a reserve for everything else the
 * process holds (connections, their input and output buffers, the hash
 * tables' slack, the code): SRV_MEM_RESERVE_MIN or a quarter of the limit,
 * whichever is more; a container too small for that gets half of its
 * limit. Without a limit the store gets SRV_MEM_DEFAULT_MIB, memcached's
 * default. docs/server.md, "-m auto".
 */
#include "server/srv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SRV_MEM_RESERVE_MIN ((int64_t)32 << 20)
#define SRV_MEM_STORE_MIN ((int64_t)8 << 20)
#define SRV_MEM_DEFAULT_MIB 64
#define SRV_MEM_UNLIMITED ((int64_t)1 << 60) /* v1 says "no limit" this way */

/* The number in file path: 1 and *v, or 0 (absent, "max", unreadable). */
static int read_limit(const char *path, int64_t *v)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	char buf[64];
	int ok = fgets(buf, sizeof(buf), f) != NULL;
	fclose(f);
	if (!ok || strncmp(buf, "max", 3) == 0)
		return 0;
	char *end;
	errno = 0;
	long long n = strtoll(buf, &end, 10);
	if (errno || end == buf || n <= 0 || n >= SRV_MEM_UNLIMITED)
		return 0;
	*v = n;
	return 1;
}

/* The cgroup path of this process for hierarchy `want` ("" for v2's
 * unified one, "memory" for v1) from proc_cgroup's lines
 * "id:controllers:path". 0, or -ENOENT. */
static int cgroup_path(const char *proc_cgroup, const char *want, char *out, size_t n)
{
	FILE *f = fopen(proc_cgroup, "re");
	if (!f)
		return -ENOENT;
	char line[4096];
	int rc = -ENOENT;
	while (rc && fgets(line, sizeof(line), f)) {
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c2 = '\0';
		const char *ctl = c1 + 1, *path = c2 + 1;
		bool match = *want ? false : *ctl == '\0';
		for (const char *p = ctl; *want && p && *p;) {
			size_t len = strcspn(p, ",");
			if (len == strlen(want) && strncmp(p, want, len) == 0)
				match = true;
			p = p[len] ? p + len + 1 : NULL;
		}
		if (!match)
			continue;
		path += strspn(path, " ");
		snprintf(out, n, "%.*s", (int)strcspn(path, "\n"), path);
		rc = 0;
	}
	fclose(f);
	return rc;
}

/* The smallest memory.max from cgroup v2's dir up to its root; 0 if none. */
static int64_t v2_limit(const char *root, char *path)
{
	int64_t best = 0;
	for (;;) {
		char file[4352];
		int64_t v;
		snprintf(file, sizeof(file), "%s%s/memory.max", root,
		         strcmp(path, "/") == 0 ? "" : path);
		if (read_limit(file, &v) && (best == 0 || v < best))
			best = v;
		char *slash = strrchr(path, '/');
		if (!slash || slash == path)
			break;
		*slash = '\0';
	}
	if (strcmp(path, "/") != 0) {
		char file[4352];
		int64_t v;
		snprintf(file, sizeof(file), "%s/memory.max", root);
		if (read_limit(file, &v) && (best == 0 || v < best))
			best = v;
	}
	return best;
}

int srv_memory_auto(const char *proc_cgroup, const char *cgroup_root,
                    struct srv_memauto *out)
{
	char path[4096];
	int64_t limit = 0;
	memset(out, 0, sizeof(*out));
	if (cgroup_path(proc_cgroup, "", path, sizeof(path)) == 0 &&
	    (limit = v2_limit(cgroup_root, path)) > 0) {
		out->source = "cgroup2 memory.max";
	} else if (cgroup_path(proc_cgroup, "memory", path, sizeof(path)) == 0) {
		char file[4352];
		snprintf(file, sizeof(file), "%s/memory%s/memory.limit_in_bytes",
		         cgroup_root, strcmp(path, "/") == 0 ? "" : path);
		if (read_limit(file, &limit))
			out->source = "cgroup1 memory.limit_in_bytes";
		else
			limit = 0;
	}
	if (limit <= 0) {
		out->source = "no limit found";
		out->store_mib = SRV_MEM_DEFAULT_MIB;
		return 0;
	}
	int64_t reserve = limit / 4 > SRV_MEM_RESERVE_MIN ? limit / 4 : SRV_MEM_RESERVE_MIN;
	int64_t store = limit - reserve;
	if (store < SRV_MEM_STORE_MIN)
		store = limit / 2;
	out->limit_bytes = limit;
	out->store_mib = store >> 20 ? store >> 20 : 1;
	return 0;
}
