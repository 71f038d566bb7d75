/*
 * srv_auth: the users of `-Y FILE` (memcached's auth file: one
 * `user:password` line each), checked by the memcached handler before a
 * connection may do anything else (docs/server.md, "Authentication").
 *
 * Ownership and threads: main creates the table at start and destroys it
 * after the loops have stopped; srv_auth_reload runs on the main thread
 * (SIGHUP) while the loops call srv_auth_check. The entries sit behind a
 * read-write lock: a check holds it shared for one scan, a reload builds
 * the new entries unlocked and swaps them in under the write lock, so a
 * check sees the old table or the new one, never a mix. A reload that
 * fails keeps the old table.
 *
 * The file must not be readable by others, nor writable by group or others
 * (a password file anyone can read is no secret): such a file is refused,
 * at start and on reload. Errors are negative errno with one line written
 * to `err`.
 */
#ifndef GEECACHE_SRV_AUTH_H
#define GEECACHE_SRV_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define SRV_AUTH_USER_MAX 255u  /* bytes of a user name */
#define SRV_AUTH_PASS_MAX 255u  /* bytes of a password */
#define SRV_AUTH_FILE_MAX (1u << 20) /* bytes of the file */

struct srv_auth;

/* Reads path into a new table in *out. 0, or a negative errno after one
 * line on err (-EACCES: permissions; -EBADMSG: a bad line; -EFBIG; the
 * open/read error). Start-up: allocates. */
int srv_auth_create(const char *path, struct srv_auth **out, FILE *err);

/* Reads the file again (the path given to create). 0 (the new table is in
 * use) or a negative errno after one line on err (the old one is kept). */
int srv_auth_reload(struct srv_auth *a, FILE *err);

/* Whether user/pass is a line of the table. Every entry is compared, each
 * in time that depends on the entry's lengths only, never on where the
 * given bytes first differ. Any thread. */
bool srv_auth_check(struct srv_auth *a, const char *user, size_t ulen,
                    const char *pass, size_t plen);

/* The number of users (for logs). */
size_t srv_auth_count(struct srv_auth *a);

/* Frees; sets *a to NULL; accepts NULL. No check may be running. */
void srv_auth_destroy(struct srv_auth **a);

#endif
