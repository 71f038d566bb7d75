/*
 * proto — memcached's binary, text and meta protocols over buffer chains.
 *
 * No sockets and no store live here: a parser turns the bytes at the head of
 * a connection's input chain into one struct mc_request; encoders turn the
 * store's answers into bytes appended to the output chain. Prefix mc_.
 *
 * Rules that hold for every call below:
 *
 *  - One parser per connection (struct mc_parser, embeddable, no pointers
 *    to free). One thread uses it at a time, together with its chains.
 *  - The parser never allocates and never copies a value. A request holds
 *    *views* of the input chain: the key as a contiguous pointer (into the
 *    chain's memory, or — only when the key spans blocks — into the parser's
 *    250-byte scratch), the value as an offset and a length in the chain
 *    (mc_req_value_iov / mc_req_value_slice / bp_chain_cut give it to the
 *    store without a copy).
 *  - Lifetime. Everything a request points to stays valid until the request
 *    is consumed: handle the request (store, encode the answer), then call
 *    mc_parser_consume(p, in, req) exactly once; it drops req->total bytes
 *    from the input chain (bytes that have not arrived yet — an oversized
 *    value being swallowed — are dropped as they arrive, by mc_parse).
 *    Do not skip, cut or reset the input chain between mc_parse and
 *    mc_parser_consume; appending (reading more) is fine.
 *  - mc_parse returns
 *       1         a request in *req (req->err == MC_ERR_NONE);
 *       -EAGAIN   not enough bytes: read more and call again. p->need is the
 *                 chain length needed before the next call can progress
 *                 (a lower bound; 0 when unknown). Nothing need be consumed.
 *                 Bytes already scanned are remembered, so a client that
 *                 sends one byte at a time costs O(n) in total.
 *       -EBADMSG  a malformed request, -EMSGSIZE one over a size limit: *req
 *                 says what to answer (req->err; mc_encode_error writes it),
 *                 req->close whether to close after writing, req->total how
 *                 many bytes the request occupies (consume them unless
 *                 closing).
 *    Error responses echo what is known (binary opcode and opaque). For
 *    MC_ERR_E2BIG req->cmd and (when it has arrived) req->key are set, so
 *    that the server can drop the stale item of a SET that was too large,
 *    as memcached does.
 *  - Encoders append to the output chain: headers and lines through
 *    bp_chain_reserve/commit (no counted copy), values through
 *    bp_chain_append_slice: by reference (the chain takes its own reference;
 *    the caller keeps the slice), or copied (counted) when shorter than the
 *    output chain's copy threshold (bp_chain_set_copy_below; 0: never
 *    copied). They return 0, or -ENOMEM (the output chain may then hold a
 *    partial response: close the connection). They honour quiet/noreply
 *    themselves: an answer the client asked not to get is not written and
 *    the call returns 0.
 *  - Expiration times are passed through raw (req->exptime as sent); turn
 *    them into absolute times with mc_exptime_abs (0 never, up to 30 days
 *    relative, above that an absolute unix time, negative already expired).
 */
#ifndef GEECACHE_PROTO_H
#define GEECACHE_PROTO_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "bufpool/bufpool.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MC_KEY_MAX 250u                    /* bytes; longer keys are refused */
#define MC_BIN_HDR_LEN 24u                 /* binary request/response header */
#define MC_BIN_REQ_MAGIC 0x80u
#define MC_BIN_RES_MAGIC 0x81u
#define MC_DEFAULT_ITEM_MAX (1024u * 1024u) /* value bytes; above: E2BIG */
#define MC_DEFAULT_BODY_MAX (1024u * 1024u * 1024u) /* above: close */
#define MC_DEFAULT_LINE_MAX (64u * 1024u)  /* text line without '\n': close */
#define MC_META_MAX_FLAGS 24               /* flag tokens per meta command */
#define MC_META_OPAQUE_MAX 32              /* bytes of an O(paque) token */
#define MC_REALTIME_MAXDELTA (60 * 60 * 24 * 30) /* the 30-day rule */

enum mc_proto {
	MC_PROTO_AUTO = 0, /* decided by the first byte: 0x80 binary, else text */
	MC_PROTO_BINARY,
	MC_PROTO_TEXT,     /* classic text and meta commands */
};

/* ------------------------------------------------------------------------
 * The command table.
 *
 * MC_CMDS: every operation once, with its counter name (what `stats` calls
 * it) and its class:
 *    X(sym, counter name, class)
 * STORE: carries a value to store (set add replace append prepend cas, ms);
 * META: a meta command (answers with return flags; mc_cmd_is_meta);
 * PLAIN: the others. A request's cmd says what the store must do; how to
 * answer follows from (proto, cmd, opcode, quiet/noreply).
 * ---------------------------------------------------------------------- */
#define MC_CMDS(X)                                                            \
	X(NONE, "none", PLAIN)                                                \
	X(GET, "get", PLAIN)      /* bin GET(Q)/GETK(Q), text get/gets */     \
	X(GAT, "gat", PLAIN)      /* bin GAT(Q)/GATK(Q), text gat/gats */     \
	X(TOUCH, "touch", PLAIN)                                              \
	X(SET, "set", STORE)      /* bin: non-zero cas compares */            \
	X(ADD, "add", STORE)                                                  \
	X(REPLACE, "replace", STORE)                                          \
	X(APPEND, "append", STORE)                                            \
	X(PREPEND, "prepend", STORE)                                          \
	X(CAS, "cas", STORE)      /* text cas */                              \
	X(DELETE, "delete", PLAIN)                                            \
	X(INCR, "incr", PLAIN)                                                \
	X(DECR, "decr", PLAIN)                                                \
	X(FLUSH, "flush", PLAIN)                                              \
	X(NOOP, "noop", PLAIN)                                                \
	X(VERSION, "version", PLAIN)                                          \
	X(STATS, "stats", PLAIN)  /* group in key (may be empty) */           \
	X(VERBOSITY, "verbosity", PLAIN)                                      \
	X(QUIT, "quit", PLAIN)                                                \
	X(MEMLIMIT, "cache_memlimit", PLAIN) /* text: megabytes in delta */    \
	X(SLABS, "slabs", PLAIN)  /* text: the rest of the line in key */     \
	X(SHUTDOWN, "shutdown", PLAIN) /* text: the rest of the line in key */ \
	X(MG, "mg", META)         /* meta get */                              \
	X(MS, "ms", META_STORE)   /* meta set (mode in meta.mode) */          \
	X(MD, "md", META)         /* meta delete */                           \
	X(MA, "ma", META)         /* meta arithmetic */                       \
	X(MN, "mn", META)         /* meta no-op */                            \
	X(ME, "me", META)         /* meta debug */                            \
	X(SASL_LIST, "sasl_list_mechs", PLAIN) /* bin 0x20 */                 \
	X(SASL_AUTH, "sasl_auth", PLAIN) /* bin 0x21: mechanism in key */     \
	X(SASL_STEP, "sasl_step", PLAIN) /* bin 0x22: as sasl_auth */

#define MC_CC_PLAIN 0u
#define MC_CC_STORE 1u
#define MC_CC_META 2u
#define MC_CC_META_STORE (MC_CC_META | MC_CC_STORE)

enum mc_cmd {
#define MC_X_ENUM(sym, name, cls) MC_CMD_##sym,
	MC_CMDS(MC_X_ENUM)
#undef MC_X_ENUM
	MC_CMD__COUNT
};

/* The class bits of a command (MC_CC_STORE, MC_CC_META: command class). */
static inline unsigned mc_cmd_class(enum mc_cmd cmd)
{
	switch (cmd) {
#define MC_X_CLASS(sym, name, cls)                                            \
	case MC_CMD_##sym:                                                    \
		return MC_CC_##cls;
		MC_CMDS(MC_X_CLASS)
#undef MC_X_CLASS
	default:
		return MC_CC_PLAIN;
	}
}

/* A storage command: set, add, replace, append, prepend, cas, ms. */
static inline int mc_cmd_is_store(enum mc_cmd cmd)
{
	return (mc_cmd_class(cmd) & MC_CC_STORE) != 0;
}

/* A meta command: mg, ms, md, ma, mn, me. */
static inline int mc_cmd_is_meta(enum mc_cmd cmd)
{
	return (mc_cmd_class(cmd) & MC_CC_META) != 0;
}

/* Counter name of a command ("get", "set", ...). */
const char *mc_cmd_name(enum mc_cmd cmd);

/* Binary request shapes: extras length, key and value rules. A request
 * whose lengths do not fit its opcode's shape is EINVAL and closes. */
enum mc_bin_shape {
	MC_SHAPE_NONE,      /* no extras, key or value (NOOP, QUIT, VERSION) */
	MC_SHAPE_KEY,       /* key only (GET*, DELETE) */
	MC_SHAPE_STORE,     /* 8-byte extras (flags, exptime), key, value */
	MC_SHAPE_CONCAT,    /* key, value (APPEND, PREPEND) */
	MC_SHAPE_ARITH,     /* 20-byte extras (delta, initial, exptime), key */
	MC_SHAPE_FLUSH,     /* optional 4-byte extras (delay) */
	MC_SHAPE_STAT,      /* optional key (group) */
	MC_SHAPE_VERBOSITY, /* 4-byte extras (level) */
	MC_SHAPE_TOUCH,     /* 4-byte extras (exptime), key (TOUCH, GAT*) */
	MC_SHAPE_SASL,      /* no extras; optional key (mechanism), value */
};

/* MC_BIN_OPCODES: one row per opcode memcached 1.6 implements. The SASL
 * opcodes are parsed here; a server without authentication answers them
 * as unknown commands, as memcached does when SASL is off.
 *    X(sym, opcode, cmd, quiet, partner (quiet <-> loud), shape, ret_key) */
#define MC_BIN_OPCODES(X)                                                     \
	X(GET,        0x00, GET,       0, 0x09, MC_SHAPE_KEY,       0)        \
	X(SET,        0x01, SET,       0, 0x11, MC_SHAPE_STORE,     0)        \
	X(ADD,        0x02, ADD,       0, 0x12, MC_SHAPE_STORE,     0)        \
	X(REPLACE,    0x03, REPLACE,   0, 0x13, MC_SHAPE_STORE,     0)        \
	X(DELETE,     0x04, DELETE,    0, 0x14, MC_SHAPE_KEY,       0)        \
	X(INCREMENT,  0x05, INCR,      0, 0x15, MC_SHAPE_ARITH,     0)        \
	X(DECREMENT,  0x06, DECR,      0, 0x16, MC_SHAPE_ARITH,     0)        \
	X(QUIT,       0x07, QUIT,      0, 0x17, MC_SHAPE_NONE,      0)        \
	X(FLUSH,      0x08, FLUSH,     0, 0x18, MC_SHAPE_FLUSH,     0)        \
	X(GETQ,       0x09, GET,       1, 0x00, MC_SHAPE_KEY,       0)        \
	X(NOOP,       0x0a, NOOP,      0, 0x0a, MC_SHAPE_NONE,      0)        \
	X(VERSION,    0x0b, VERSION,   0, 0x0b, MC_SHAPE_NONE,      0)        \
	X(GETK,       0x0c, GET,       0, 0x0d, MC_SHAPE_KEY,       1)        \
	X(GETKQ,      0x0d, GET,       1, 0x0c, MC_SHAPE_KEY,       1)        \
	X(APPEND,     0x0e, APPEND,    0, 0x19, MC_SHAPE_CONCAT,    0)        \
	X(PREPEND,    0x0f, PREPEND,   0, 0x1a, MC_SHAPE_CONCAT,    0)        \
	X(STAT,       0x10, STATS,     0, 0x10, MC_SHAPE_STAT,      0)        \
	X(SETQ,       0x11, SET,       1, 0x01, MC_SHAPE_STORE,     0)        \
	X(ADDQ,       0x12, ADD,       1, 0x02, MC_SHAPE_STORE,     0)        \
	X(REPLACEQ,   0x13, REPLACE,   1, 0x03, MC_SHAPE_STORE,     0)        \
	X(DELETEQ,    0x14, DELETE,    1, 0x04, MC_SHAPE_KEY,       0)        \
	X(INCREMENTQ, 0x15, INCR,      1, 0x05, MC_SHAPE_ARITH,     0)        \
	X(DECREMENTQ, 0x16, DECR,      1, 0x06, MC_SHAPE_ARITH,     0)        \
	X(QUITQ,      0x17, QUIT,      1, 0x07, MC_SHAPE_NONE,      0)        \
	X(FLUSHQ,     0x18, FLUSH,     1, 0x08, MC_SHAPE_FLUSH,     0)        \
	X(APPENDQ,    0x19, APPEND,    1, 0x0e, MC_SHAPE_CONCAT,    0)        \
	X(PREPENDQ,   0x1a, PREPEND,   1, 0x0f, MC_SHAPE_CONCAT,    0)        \
	X(VERBOSITY,  0x1b, VERBOSITY, 0, 0x1b, MC_SHAPE_VERBOSITY, 0)        \
	X(TOUCH,      0x1c, TOUCH,     0, 0x1c, MC_SHAPE_TOUCH,     0)        \
	X(GAT,        0x1d, GAT,       0, 0x1e, MC_SHAPE_TOUCH,     0)        \
	X(GATQ,       0x1e, GAT,       1, 0x1d, MC_SHAPE_TOUCH,     0)        \
	X(GATK,       0x23, GAT,       0, 0x24, MC_SHAPE_TOUCH,     1)        \
	X(GATKQ,      0x24, GAT,       1, 0x23, MC_SHAPE_TOUCH,     1)        \
	X(SASL_LIST_MECHS, 0x20, SASL_LIST, 0, 0x20, MC_SHAPE_SASL,   0)        \
	X(SASL_AUTH,  0x21, SASL_AUTH, 0, 0x21, MC_SHAPE_SASL,      0)        \
	X(SASL_STEP,  0x22, SASL_STEP, 0, 0x22, MC_SHAPE_SASL,      0)

enum mc_bin_opcode {
#define MC_X_OP(sym, op, cmd, q, partner, shape, rk) MC_OP_##sym = op,
	MC_BIN_OPCODES(MC_X_OP)
#undef MC_X_OP
};

/* Description of an opcode; NULL for opcodes not in the table. */
struct mc_bin_opdesc {
	const char *name;
	enum mc_cmd cmd;
	uint8_t opcode, quiet, partner, ret_key;
	enum mc_bin_shape shape;
};
const struct mc_bin_opdesc *mc_bin_lookup(uint8_t opcode);

/* MC_TEXT_CMDS: the text commands (classic and meta).
 *    X(name, cmd, min args, max args, family)
 * args: tokens after the name (-1: any number); they are counted, and a
 * count out of range is ERROR, by the families with fixed arguments
 * (storage, delete, arith, touch, flush, verbosity); the others read
 * their arguments themselves. family: the argument parser in text.c
 * (text_<family>) that turns the rest of the line into the request. */
#define MC_TEXT_CMDS(X)                                                       \
	X("get", GET, 1, -1, retrieval)                                       \
	X("gets", GET, 1, -1, retrieval)                                      \
	X("gat", GAT, 1, -1, retrieval)                                       \
	X("gats", GAT, 1, -1, retrieval)                                      \
	X("set", SET, 4, 5, storage)                                          \
	X("add", ADD, 4, 5, storage)                                          \
	X("replace", REPLACE, 4, 5, storage)                                  \
	X("append", APPEND, 4, 5, storage)                                    \
	X("prepend", PREPEND, 4, 5, storage)                                  \
	X("cas", CAS, 5, 6, storage)                                          \
	X("delete", DELETE, 1, 3, delete)                                     \
	X("incr", INCR, 2, 3, arith)                                          \
	X("decr", DECR, 2, 3, arith)                                          \
	X("touch", TOUCH, 2, 3, touch)                                        \
	X("flush_all", FLUSH, 0, 2, flush)                                    \
	X("stats", STATS, 0, -1, stats)                                       \
	X("version", VERSION, 0, -1, version)                                 \
	X("verbosity", VERBOSITY, 1, 2, verbosity)                            \
	X("quit", QUIT, 0, -1, quit)                                          \
	X("cache_memlimit", MEMLIMIT, 1, 2, memlimit)                         \
	X("slabs", SLABS, 0, -1, stats)                                       \
	X("shutdown", SHUTDOWN, 0, -1, stats)                                 \
	X("mg", MG, 1, -1, meta)                                              \
	X("ms", MS, 2, -1, meta)                                              \
	X("md", MD, 1, -1, meta)                                              \
	X("ma", MA, 1, -1, meta)                                              \
	X("mn", MN, 0, -1, meta)                                              \
	X("me", ME, 1, -1, meta)

/* ------------------------------------------------------------------------
 * Parse errors: what the server answers. Binary status (0 = close without
 * answering), text line, and whether the connection closes.
 * ---------------------------------------------------------------------- */
#define MC_ERRORS(X)                                                          \
	X(NONE, 0x00, 0, NULL)                                                \
	X(BAD_MAGIC, 0x00, 1, NULL)                                           \
	X(EINVAL, 0x04, 1, "CLIENT_ERROR bad command line format")            \
	X(BAD_LENGTHS, 0x81, 1, NULL) /* binary key+extras > body: as memcached */ \
	X(UNKNOWN_COMMAND, 0x81, 0, "ERROR")                                  \
	X(E2BIG, 0x03, 0, "SERVER_ERROR object too large for cache")          \
	X(BODY_TOO_LARGE, 0x03, 1, "SERVER_ERROR object too large for cache") \
	X(LINE_TOO_LONG, 0x00, 1, "CLIENT_ERROR line too long")               \
	/* an unknown command whose last word starts with "HTTP/": close */    \
	X(HTTP, 0x00, 1, NULL)                                                \
	X(BAD_FORMAT, 0x04, 0, "CLIENT_ERROR bad command line format")        \
	X(BAD_CHUNK, 0x04, 0, "CLIENT_ERROR bad data chunk")                  \
	X(BAD_EXPTIME, 0x04, 0, "CLIENT_ERROR invalid exptime argument")      \
	X(BAD_DELTA, 0x04, 0, "CLIENT_ERROR invalid numeric delta argument")  \
	X(DELETE_USAGE, 0x04, 0,                                              \
	  "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]") \
	X(META_INVALID_FLAG, 0x04, 0, "CLIENT_ERROR invalid flag")            \
	X(META_DUP_FLAG, 0x04, 0, "CLIENT_ERROR duplicate flag")              \
	X(META_INVALID_OR_DUP, 0x04, 0, "CLIENT_ERROR invalid or duplicate flag") \
	X(META_BAD_TOKEN, 0x04, 0, "CLIENT_ERROR bad token in command line format") \
	X(META_TOO_MANY, 0x04, 0, "CLIENT_ERROR options flags are too long")  \
	X(META_TOO_MANY_MS, 0x04, 0, "CLIENT_ERROR options flags too long")   \
	X(META_OPAQUE, 0x04, 0, "CLIENT_ERROR opaque token too long")         \
	X(META_BAD_KEY, 0x04, 0, "CLIENT_ERROR error decoding key")           \
	X(META_M_LENGTH, 0x04, 0, "CLIENT_ERROR incorrect length for M token") \
	X(META_MS_MODE, 0x04, 0, "CLIENT_ERROR invalid mode for ms M token")  \
	X(META_MA_MODE, 0x04, 0, "CLIENT_ERROR invalid mode for ma M token")  \
	X(META_BAD_INITIAL, 0x04, 0, "CLIENT_ERROR invalid numeric initial value") \
	X(META_BAD_DELTA, 0x04, 0, "CLIENT_ERROR invalid numeric delta value")

enum mc_err {
#define MC_X_ERR(sym, st, cl, line) MC_ERR_##sym,
	MC_ERRORS(MC_X_ERR)
#undef MC_X_ERR
	MC_ERR__COUNT
};

const char *mc_err_name(enum mc_err err);  /* "E2BIG", ... */
const char *mc_err_line(enum mc_err err);  /* text line, or NULL */

/* ------------------------------------------------------------------------
 * Requests
 * ---------------------------------------------------------------------- */

/* Meta flag bit of a flag letter ('A'..'Z', 'a'..'z'). */
#define MC_MF(ch) ((ch) >= 'a' ? (UINT64_C(1) << ((ch) - 'a' + 26))        \
                               : (UINT64_C(1) << ((ch) - 'A')))

/* MC_META_FLAGS: every meta flag once. The parser, the return flags of the
 * answers and docs/protocol.md's flag list (tests/docs checks it) all come
 * from it; adding a flag is a row here plus, when the store acts on it,
 * the server code that reads it.
 *    X(letter, arg, field, err, for, ret, in, help)
 * arg    what follows the letter, stored into field of struct mc_request:
 *        FLAG   nothing (field is meta.flags: the bit is the flag),
 *        BOOL   nothing; field (uint8_t) is set to 1,
 *        I32    a signed 32-bit number (field int64_t),
 *        U32    an unsigned 32-bit number (field uint32_t),
 *        U64    an unsigned 64-bit number (field uint64_t),
 *        OPAQUE a token of at most MC_META_OPAQUE_MAX - 1 bytes (field
 *               meta.opaque, its length meta.opaque_len),
 *        MODE   exactly one character (field char).
 *        Every flag also sets its MC_MF bit in meta.flags and its letter
 *        in meta.order.
 * err    the error when the argument is bad (NONE: cannot be).
 * for    the meta commands the flag is meant for (MC_MFOR bits). The
 *        parser accepts every flag on mg, ms, md and ma, as memcached does;
 *        a flag that means nothing to a command is ignored there.
 * ret    what an answer says for it, in request order: NONE, or the value
 *        written after the letter (OPAQUE, KEY, CAS, SIZE, TTL, FLAGS,
 *        LAST_ACCESS, FETCHED);
 * in     the answers that carry it (MC_MREP bits): STATUS any status line
 *        (HD NF NS EX EN), STORE ms's status line, HIT mg's HD/VA, ARITH
 *        ma's HD/VA.
 * help   one line for the docs. */
#define MC_MFOR(c) (1u << MC_CMD_##c)
#define MC_MFOR_KEYED (MC_MFOR(MG) | MC_MFOR(MS) | MC_MFOR(MD) | MC_MFOR(MA))
#define MC_MREP_STATUS 1u
#define MC_MREP_STORE 2u
#define MC_MREP_HIT 4u
#define MC_MREP_ARITH 8u
#define MC_MREP_ALL 15u
#define MC_META_FLAGS(X)                                                      \
	X('b', BOOL, meta.key_b64, NONE, MC_MFOR_KEYED, NONE, 0,              \
	  "the key is base64, decoded for the store; `k` re-encodes it and "  \
	  "adds ` b`")                                                        \
	X('c', FLAG, meta.flags, NONE, MC_MFOR(MG) | MC_MFOR(MS) | MC_MFOR(MA), \
	  CAS, MC_MREP_STORE | MC_MREP_HIT | MC_MREP_ARITH,                   \
	  "return the cas (ms: of the item stored)")                         \
	X('f', FLAG, meta.flags, NONE, MC_MFOR(MG), FLAGS, MC_MREP_HIT,       \
	  "return the client flags")                                         \
	X('h', FLAG, meta.flags, NONE, MC_MFOR(MG), FETCHED, MC_MREP_HIT,     \
	  "return whether the item was fetched before this request")        \
	X('k', FLAG, meta.flags, NONE, MC_MFOR_KEYED, KEY, MC_MREP_ALL,       \
	  "return the key")                                                  \
	X('l', FLAG, meta.flags, NONE, MC_MFOR(MG), LAST_ACCESS, MC_MREP_HIT, \
	  "return the seconds since the last access (before this request)") \
	X('s', FLAG, meta.flags, NONE, MC_MFOR(MG), SIZE, MC_MREP_HIT,        \
	  "return the value's size")                                         \
	X('t', FLAG, meta.flags, NONE, MC_MFOR(MG) | MC_MFOR(MA), TTL,        \
	  MC_MREP_HIT | MC_MREP_ARITH,                                        \
	  "return the seconds left to live (-1: never expires); mg: as a T "  \
	  "or a vivifying N before it in the request left them")            \
	X('v', FLAG, meta.flags, NONE, MC_MFOR(MG) | MC_MFOR(MA), NONE, 0,    \
	  "answer VA with the value (ma: the new number)")                   \
	X('u', FLAG, meta.flags, NONE, MC_MFOR(MG), NONE, 0,                  \
	  "do not bump the item: fetched (h) and last access (l) stay")      \
	X('q', BOOL, quiet, NONE, MC_MFOR_KEYED, NONE, 0,                     \
	  "quiet: no HD (ms md ma) or EN (mg) answer; errors still answered") \
	X('O', OPAQUE, meta.opaque, META_OPAQUE, MC_MFOR_KEYED, OPAQUE,       \
	  MC_MREP_ALL, "opaque token, echoed")                               \
	X('T', I32, exptime, META_BAD_TOKEN,                                  \
	  MC_MFOR(MG) | MC_MFOR(MS) | MC_MFOR(MD) | MC_MFOR(MA), NONE, 0,     \
	  "time to live: ms stores it, mg and ma touch the item, md I sets " \
	  "it")                                                              \
	X('N', I32, meta.vivify, META_BAD_TOKEN, MC_MFOR(MG) | MC_MFOR(MA),   \
	  NONE, 0, "vivify a miss with this time to live (mg: empty item, "   \
	  "this client wins `W`, later ones get `Z` until it is set; ma: "    \
	  "created from J)")                                                 \
	X('R', I32, meta.recache, META_BAD_TOKEN, MC_MFOR(MG), NONE, 0,       \
	  "win (`W`) a recache when the time to live is below this and no "   \
	  "token is out")                                                    \
	X('I', FLAG, meta.flags, NONE, MC_MFOR(MD) | MC_MFOR(MS), NONE, 0,    \
	  "invalidate: md marks the item stale (new cas; T sets its time to " \
	  "live), the next mg wins `W` and gets `X`; ms with C stores a "     \
	  "value whose cas is older as stale")                               \
	X('C', U64, cas, META_BAD_TOKEN,                                      \
	  MC_MFOR(MS) | MC_MFOR(MD) | MC_MFOR(MA), NONE, 0,                   \
	  "compare this cas (ms md: C0 too, which no item has; ma: C0 is no " \
	  "C)")                                                              \
	X('F', U32, flags, BAD_FORMAT, MC_MFOR(MS), NONE, 0,                  \
	  "client flags to store")                                           \
	X('M', MODE, meta.mode, META_M_LENGTH, MC_MFOR(MS) | MC_MFOR(MA),     \
	  NONE, 0, "mode, either case: ms E A P R S, ma I + D -")            \
	X('D', U64, delta, META_BAD_DELTA, MC_MFOR(MA), NONE, 0,              \
	  "delta (default 1)")                                               \
	X('J', U64, initial, META_BAD_INITIAL, MC_MFOR(MA), NONE, 0,          \
	  "initial value of an item N creates")                              \
	X('P', FLAG, meta.flags, NONE, MC_MFOR_KEYED, NONE, 0,                \
	  "proxy hint (ignored)")                                            \
	X('L', FLAG, meta.flags, NONE, MC_MFOR_KEYED, NONE, 0,                \
	  "proxy hint (ignored)")

/* The meta flags of a request (MC_META_FLAGS says which field each fills;
 * some fill fields of struct mc_request instead). */
struct mc_meta {
	uint64_t flags;                    /* MC_MF(letter) for each flag seen */
	char order[MC_META_MAX_FLAGS];     /* flag letters in request order */
	uint8_t norder;
	char mode;                         /* M token, 0 when absent */
	uint8_t key_b64;                   /* b: key was base64 (now decoded) */
	uint8_t opaque_len;
	char opaque[MC_META_OPAQUE_MAX];   /* O token without the 'O' */
	int64_t vivify;                    /* N token (raw exptime) */
	int64_t recache;                   /* R token (raw exptime) */
};

struct mc_request {
	enum mc_cmd cmd;
	enum mc_err err;       /* MC_ERR_NONE unless mc_parse failed */
	uint8_t proto;         /* MC_PROTO_BINARY or MC_PROTO_TEXT */
	uint8_t opcode;        /* binary: as received, echoed in every answer */
	uint8_t quiet;         /* binary quiet opcode; meta q */
	uint8_t noreply;       /* text noreply: no answer at all */
	uint8_t close;         /* close after answering (errors; quit) */
	uint8_t ret_key;       /* binary GETK/GATK: answer carries the key */
	uint8_t ret_cas;       /* text gets/gats: VALUE lines carry the cas */
	uint8_t has_exptime;   /* flush with a delay */
	uint8_t no_create;     /* binary incr/decr: exptime 0xffffffff */
	uint32_t opaque;       /* binary opaque, echoed */
	uint64_t cas;          /* the cas to compare, 0 for none: binary
	                        * header cas, text cas unique, meta C (0 when
	                        * C was not given) */
	uint32_t flags;        /* client flags (set family, meta F) */
	int64_t exptime;       /* raw exptime (set, touch, gat, flush delay,
	                        * incr create, meta T) */
	uint64_t delta;        /* incr/decr, meta D (default 1) */
	uint64_t initial;      /* binary incr/decr create value, meta J */
	uint32_t level;        /* verbosity */

	/* The key (stats: the group). Contiguous; points into the input chain
	 * or into the parser's scratch. key_len 0 when absent. */
	const char *key;
	uint32_t key_len;

	/* The value: value_len bytes at offset value_off of the input chain
	 * (text: the "\r\n" after it is not counted). */
	size_t value_off;
	uint32_t value_len;

	/* Text retrieval commands (get/gets/gat/gats): nkeys keys separated by
	 * spaces in [keys_off, keys_end) of the input chain; walk them with
	 * mc_req_next_key. key/key_len is the first one. */
	uint32_t nkeys;
	size_t keys_off, keys_end;

	struct mc_meta meta;

	/* Bytes this request occupies from the chain's read position (header,
	 * line, value, and for errors what must be swallowed). May exceed the
	 * chain's length when an oversized value is being swallowed. */
	size_t total;
};

/* ------------------------------------------------------------------------
 * Parser
 * ---------------------------------------------------------------------- */

/* Per-thread counters the parser bumps when given one (see opts). */
struct mc_counters {
	uint64_t cmds[MC_CMD__COUNT];   /* requests parsed, per command */
	uint64_t errors[MC_ERR__COUNT]; /* parse errors, per kind */
	uint64_t bytes;                 /* request bytes parsed */
};

struct mc_parser_opts {
	enum mc_proto proto;     /* MC_PROTO_AUTO (default) detects */
	uint32_t item_max;       /* value limit; 0 = MC_DEFAULT_ITEM_MAX */
	uint32_t body_max;       /* binary body limit; 0 = MC_DEFAULT_BODY_MAX */
	uint32_t line_max;       /* text line limit; 0 = MC_DEFAULT_LINE_MAX */
	struct mc_counters *counters; /* may be NULL; not owned */
};

/* Visible to be embedded; fields are private to proto. A parser may be
 * moved or copied by value between mc_parse calls, also while a request
 * waits for its value: the state holds no pointer into itself or into the
 * input chain (a pending request's key is kept in its own scratch). */
struct mc_parser {
	uint8_t proto;            /* enum mc_proto; AUTO until the first byte */
	uint8_t has_pending;      /* a header/line parsed, waiting for its value */
	uint32_t item_max, body_max, line_max;
	size_t need;              /* hint after -EAGAIN (public, read-only) */
	size_t scan;              /* text: bytes searched for '\n' so far */
	uint64_t swallow;         /* bytes still to drop as they arrive */
	struct mc_counters *counters;
	struct mc_request pending;
	char scratch[MC_KEY_MAX + 6]; /* keys that span blocks; decoded b64 */
};

/* Sets the options and clears the parse state (not the pending request or
 * the key scratch, which are written before they are read). */
void mc_parser_init(struct mc_parser *p, const struct mc_parser_opts *opts);
/* Forgets any partial state (a new connection). Options are kept. */
void mc_parser_reset(struct mc_parser *p);

/* Parses the request at the head of `in`; see the rules at the top. */
int mc_parse(struct mc_parser *p, struct bp_chain *in, struct mc_request *req);

/* Drops req->total bytes (after a request or an error that keeps the
 * connection); bytes not yet arrived are dropped by later mc_parse calls. */
void mc_parser_consume(struct mc_parser *p, struct bp_chain *in,
                       const struct mc_request *req);

/* The protocol chosen (MC_PROTO_AUTO until the first byte was seen). */
static inline enum mc_proto mc_parser_proto(const struct mc_parser *p)
{
	return (enum mc_proto)p->proto;
}

/* True when the parser holds nothing between requests: no request parsed
 * and waiting for its value, nothing left to swallow, no line being
 * scanned. A server may then give the parser back and, when more bytes
 * come, init a new one with the protocol already chosen (opts.proto) —
 * so that an idle connection keeps no parser state. */
static inline int mc_parser_idle(const struct mc_parser *p)
{
	return !p->has_pending && !p->swallow && !p->scan;
}

/* A key in the input chain (a view, valid until the chain is consumed). */
struct mc_key_view {
	const char *key;
	size_t len;
};

/* The keys of the binary GET-family requests (GET, GETQ, GETK, GETKQ)
 * among the whole requests at the start of the chain's first block, at most
 * max: a hint for prefetching the store before a pipeline is executed.
 * Scanning stops at the first thing that is not a whole, well-formed
 * binary request; mc_parse still judges every byte. Returns the count. */
unsigned mc_bin_peek_get_keys(const struct bp_chain *in, struct mc_key_view *keys,
                              unsigned max);

/* The same hint from raw bytes that start a request (netpoll's on_peek):
 * binary GETs as above, or the keys of a text line "get k1 k2 ...",
 * "gets ..." or "mg k ..." that ends in [p, p + n). Returns the count. */
unsigned mc_peek_get_keys(const void *p, size_t n, struct mc_key_view *keys,
                          unsigned max);

/* The value as iovecs into the input chain (no copy): count, or -EMSGSIZE
 * when more than max_iov are needed. */
int mc_req_value_iov(const struct mc_request *req, const struct bp_chain *in,
                     struct iovec *iov, int max_iov);

/* The value as one referenced slice; -EXDEV when it spans blocks. The
 * caller owns the slice (bp_slice_release). */
int mc_req_value_slice(const struct mc_request *req, const struct bp_chain *in,
                       struct bp_slice *out);

/* Text retrieval commands: *pos starts at 0; each call yields the next key
 * (pointer valid until the next call or consume) and returns 1, or 0 after
 * the last one. Keys were validated by mc_parse. A key that spans blocks is
 * copied into the parser's scratch, which req->key may also point to: use
 * either req->key or the walk, not both at once. */
int mc_req_next_key(struct mc_parser *p, struct bp_chain *in,
                    const struct mc_request *req, size_t *pos,
                    const char **key, size_t *key_len);

/* Absolute expiry (unix seconds) of a raw exptime at time `now`: 0 never,
 * negative already expired (returns now - 1), up to 30 days relative,
 * above that absolute. */
static inline int64_t mc_exptime_abs(int64_t raw, int64_t now)
{
	if (raw == 0)
		return 0;
	if (raw < 0)
		return now - 1;
	if (raw <= MC_REALTIME_MAXDELTA)
		return now + raw;
	return raw;
}

/* ------------------------------------------------------------------------
 * Encoders
 * ---------------------------------------------------------------------- */

/* What the store answered; each protocol spells it its own way. */
#define MC_STATUSES(X)                                                        \
	X(OK, 0x00, "")                                                       \
	X(NOT_FOUND, 0x01, "Not found")                                       \
	X(EXISTS, 0x02, "Data exists for key.")                               \
	X(E2BIG, 0x03, "Too large.")                                          \
	X(EINVAL, 0x04, "Invalid arguments")                                  \
	X(NOT_STORED, 0x05, "Not stored.")                                    \
	X(DELTA_BADVAL, 0x06, "Non-numeric server-side value for incr or decr") \
	X(AUTH_ERROR, 0x20, "Auth failure.")                                  \
	X(UNKNOWN_COMMAND, 0x81, "Unknown command")                           \
	X(ENOMEM, 0x82, "Out of memory")

enum mc_status {
#define MC_X_ST(sym, code, msg) MC_ST_##sym,
	MC_STATUSES(MC_X_ST)
#undef MC_X_ST
	MC_ST__COUNT
};

uint16_t mc_status_bin_code(enum mc_status st);

/* Writes the answer for a parse error (req->err), honouring the protocol:
 * binary error packet (opcode and opaque echoed, short text body), text
 * line, or nothing (bad magic). Text noreply suppresses it, as memcached
 * does. */
int mc_encode_error(struct bp_chain *out, const struct mc_request *req);

/* Writes the answer that carries no item, for any protocol and command:
 *  binary: status packet (body = the status message for errors; cas on
 *          success), suppressed for quiet success and quiet GET misses;
 *          GETK misses carry the key;
 *  text:   STORED / NOT_STORED / EXISTS / NOT_FOUND / DELETED / TOUCHED /
 *          OK (flush, verbosity) / END (get miss: nothing to add, use
 *          mc_text_encode_end) / SERVER_ERROR / CLIENT_ERROR lines;
 *  meta:   HD / NS / EX / NF / EN / MN with O and k (and c = `cas`)
 *          return flags; q suppresses HD (ms, md, ma) and EN (mg).
 * `cas` goes into the binary header and the meta c flag. */
int mc_encode_status(struct bp_chain *out, const struct mc_request *req,
                     enum mc_status st, uint64_t cas);

/* Binary GET/GETK/GAT/GATK (and quiet forms) hit, and TOUCH success:
 * header, 4-byte flags, key for the K forms, value (see above; none for
 * TOUCH; value may be NULL for an empty value). */
int mc_bin_encode_get_hit(struct bp_chain *out, const struct mc_request *req,
                          uint32_t flags, uint64_t cas,
                          const struct bp_slice *value);
/* Binary INCR/DECR success: 8-byte value; suppressed when quiet. */
int mc_bin_encode_incr(struct bp_chain *out, const struct mc_request *req,
                       uint64_t value, uint64_t cas);
/* A binary answer with status st whose body is the value val (vlen bytes;
 * no extras, no key): the SASL answers ("PLAIN", "Authenticated"). Never
 * suppressed. */
int mc_bin_encode_body(struct bp_chain *out, const struct mc_request *req,
                       enum mc_status st, const void *val, uint32_t vlen);
/* Binary VERSION answer. */
int mc_bin_encode_version(struct bp_chain *out, const struct mc_request *req,
                          const char *version);
/* One binary STAT packet (key = name, value = value); end with
 * mc_bin_encode_stat_end (the empty packet). */
int mc_bin_encode_stat(struct bp_chain *out, const struct mc_request *req,
                       const char *name, size_t nlen, const char *val,
                       size_t vlen);
int mc_bin_encode_stat_end(struct bp_chain *out, const struct mc_request *req);

/* Text "VALUE <key> <flags> <bytes>[ <cas>]\r\n<value>\r\n" (cas when the
 * request was gets/gats); the value (see above), NULL when empty. */
int mc_text_encode_value(struct bp_chain *out, const struct mc_request *req,
                         const char *key, size_t key_len, uint32_t flags,
                         uint64_t cas, const struct bp_slice *value);
int mc_text_encode_end(struct bp_chain *out);                /* "END\r\n" */
/* incr/decr result "<value>\r\n" (noreply honoured). */
int mc_text_encode_number(struct bp_chain *out, const struct mc_request *req,
                          uint64_t value);
int mc_text_encode_version(struct bp_chain *out, const char *version);
/* "STAT <name> <value>\r\n"; end with mc_text_encode_end. */
int mc_text_encode_stat(struct bp_chain *out, const char *name, size_t nlen,
                        const char *val, size_t vlen);
/* Any line (len bytes) followed by "\r\n" (e.g. the me answer). */
int mc_text_encode_line(struct bp_chain *out, const char *line, size_t len);

/* What mg/ma report about an item. */
struct mc_item_info {
	uint32_t flags;     /* client flags (f) */
	uint32_t size;      /* value bytes (s) */
	uint64_t cas;       /* c */
	int64_t ttl;        /* seconds left, -1 = never (t); mg: before its T
	                     * or N changed them */
	int64_t ttl_touch;  /* mg: what t reports after a T (T's time to live) */
	int64_t ttl_vivify; /* mg: what t reports after an N that created the
	                     * item (N's time to live) */
	uint32_t last_access; /* seconds since (l) */
	uint8_t fetched;    /* h: fetched before */
	uint8_t won;        /* W: client won the recache token */
	uint8_t stale;      /* X: item is stale */
	uint8_t token_sent; /* Z: a token was already sent */
	uint8_t vivified;   /* mg: N created the item */
};

/* mg hit: "VA <size> <flags>\r\n<value>\r\n" when v was asked, else
 * "HD <flags>\r\n"; return flags (s t c f l h O k) in request order, then
 * Z/X/W. As in memcached, t reports the time to live as the flags before
 * it left it: ttl, or ttl_touch after a T, or ttl_vivify after an N of a
 * vivified item. The value as above. */
int mc_meta_encode_hit(struct bp_chain *out, const struct mc_request *req,
                       const struct mc_item_info *info,
                       const struct bp_slice *value);
/* ma success: HD (or VA with the number when v was asked) with c t O k. */
int mc_meta_encode_arith(struct bp_chain *out, const struct mc_request *req,
                         const struct mc_item_info *info, uint64_t value);

#ifdef __cplusplus
}
#endif

#endif /* GEECACHE_PROTO_H */
