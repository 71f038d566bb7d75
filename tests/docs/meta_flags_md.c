/*
 * Prints the meta flag table of docs/protocol.md from MC_META_FLAGS
 * (proto/proto.h), so that the docs cannot drift from the table the parser
 * and the encoders use: the docs_meta_flags test diffs this output against
 * the block between the markers in docs/protocol.md.
 */
#include <stdio.h>
#include <string.h>

#include "proto/proto.h"

static const char *arg_text(const char *arg)
{
	static const struct {
		const char *kind, *text;
	} kinds[] = {
		{"FLAG", "—"},
		{"BOOL", "—"},
		{"I32", "number (32-bit, signed)"},
		{"U32", "number (32-bit)"},
		{"U64", "number (64-bit)"},
		{"OPAQUE", "token (at most 31 bytes)"},
		{"MODE", "one character"},
	};
	_Static_assert(MC_META_OPAQUE_MAX - 1 == 31, "the OPAQUE text says 31");
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(kinds[i].kind, arg) == 0)
			return kinds[i].text;
	return "?";
}

static void print_cmds(unsigned mask)
{
	const char *sep = "";

	for (int c = 0; c < MC_CMD__COUNT; c++) {
		if (mask & (1u << c)) {
			printf("%s%s", sep, mc_cmd_name((enum mc_cmd)c));
			sep = " ";
		}
	}
}

static void print_ret(char letter, const char *ret, unsigned in)
{
	static const struct {
		const char *kind, *value;
	} rets[] = {
		{"OPAQUE", "<opaque>"}, {"KEY", "<key>"},   {"CAS", "<cas>"},
		{"SIZE", "<bytes>"},    {"TTL", "<secs>"},  {"FLAGS", "<flags>"},
		{"LAST_ACCESS", "<secs>"}, {"FETCHED", "<0 or 1>"},
	};
	static const struct {
		unsigned bit;
		const char *name;
	} answers[] = {
		{MC_MREP_STATUS, "status lines"},
		{MC_MREP_STORE, "ms"},
		{MC_MREP_HIT, "mg hit"},
		{MC_MREP_ARITH, "ma"},
	};
	const char *value = NULL, *sep = "";

	for (size_t i = 0; i < sizeof(rets) / sizeof(rets[0]); i++)
		if (strcmp(rets[i].kind, ret) == 0)
			value = rets[i].value;
	if (value == NULL) {
		printf("—");
		return;
	}
	printf("`%c%s` in ", letter, value);
	if (in == MC_MREP_ALL) {
		printf("every answer");
		return;
	}
	for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
		if (in & answers[i].bit) {
			printf("%s%s", sep, answers[i].name);
			sep = ", ";
		}
	}
}

static void row(char letter, const char *arg, const char *field,
                unsigned cmds, const char *ret, unsigned in,
                const char *help)
{
	printf("| `%c` | %s | ", letter, arg_text(arg));
	if (strcmp(arg, "FLAG") == 0)
		printf("—");
	else
		printf("`%s`", field);
	printf(" | ");
	print_cmds(cmds);
	printf(" | ");
	print_ret(letter, ret, in);
	printf(" | %s |\n", help);
}

int main(void)
{
	printf("| Flag | Argument | Fills (`struct mc_request`) | For | "
	       "Returned | Meaning |\n");
	printf("|---|---|---|---|---|---|\n");
#define ROW(l, arg, field, err, for_, ret, in, help)                           \
	row(l, #arg, #field, for_, #ret, in, help);
	MC_META_FLAGS(ROW)
#undef ROW
	return 0;
}
