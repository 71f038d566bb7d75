/*
 * geecached — placeholder until the server issue lands. It prints its
 * version and says plainly that the server is not implemented yet.
 */
#include <stdio.h>

int main(void)
{
	printf("geecached %s\n", GEECACHE_VERSION);
	fprintf(stderr, "geecached: not yet implemented (the server issue has not landed; "
	                "see README.md)\n");
	return 1;
}
