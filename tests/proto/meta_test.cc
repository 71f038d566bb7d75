// Meta commands: golden parses, error lines, answers.
#include "util.h"

using namespace mctest;

namespace {

struct Meta : ::testing::Test {
	mc_parser p;
	Chain in, out;
	mc_request r;
	void SetUp() override { mc_parser_init(&p, nullptr); }
	int feed(const std::string &s)
	{
		add_block(&in, s);
		return mc_parse(&p, &in, &r);
	}
	std::string key() const { return std::string(r.key, r.key_len); }
	void next() { mc_parser_consume(&p, &in, &r); }
	std::string error_of(const std::string &line, int want_rc = -EBADMSG,
	                     size_t *total = nullptr)
	{
		Chain c, o;
		mc_parser q;
		mc_parser_init(&q, nullptr);
		add_block(&c, line);
		EXPECT_EQ(mc_parse(&q, &c, &r), want_rc) << line;
		EXPECT_EQ(mc_encode_error(&o, &r), 0);
		if (total)
			*total = r.total;
		return o.str();
	}
	std::string answer(const std::string &wire, mc_status st, uint64_t cas = 0)
	{
		Chain i, o;
		mc_parser q;
		mc_parser_init(&q, nullptr);
		add_block(&i, wire);
		EXPECT_EQ(mc_parse(&q, &i, &r), 1) << wire;
		EXPECT_EQ(mc_encode_status(&o, &r, st, cas), 0);
		return o.str();
	}
};

TEST_F(Meta, MgFlagsInOrder)
{
	ASSERT_EQ(feed("mg foo v f t c k s Oab12 q T30 N60 R10 h l u\r\n"), 1);
	EXPECT_EQ(r.cmd, MC_CMD_MG);
	EXPECT_EQ(key(), "foo");
	EXPECT_EQ(std::string(r.meta.order, r.meta.norder), "vftcksOqTNRhlu");
	EXPECT_TRUE(r.meta.flags & MC_MF('v'));
	EXPECT_TRUE(r.meta.flags & MC_MF('T'));
	EXPECT_FALSE(r.meta.flags & MC_MF('b'));
	EXPECT_EQ(r.quiet, 1);
	EXPECT_EQ(r.exptime, 30);
	EXPECT_EQ(r.meta.vivify, 60);
	EXPECT_EQ(r.meta.recache, 10);
	EXPECT_EQ(std::string(r.meta.opaque, r.meta.opaque_len), "ab12");
	EXPECT_EQ(r.total, 46u);
}

TEST_F(Meta, Base64Key)
{
	ASSERT_EQ(feed("mg Zm9vAGJhcg== b k v\r\n"), 1); // "foo\0bar"
	EXPECT_EQ(r.meta.key_b64, 1);
	EXPECT_EQ(key(), std::string("foo\0bar", 7));
	mc_item_info info{};
	bp_slice v = make_slice("x");
	ASSERT_EQ(mc_meta_encode_hit(&out, &r, &info, &v), 0);
	EXPECT_EQ(out.str(), "VA 1 kZm9vAGJhcg== b\r\nx\r\n");
	bp_slice_release(&v);
	EXPECT_EQ(error_of("mg Zm9v= b\r\n"), "CLIENT_ERROR error decoding key\r\n");
}

TEST_F(Meta, MsWithValueAndModes)
{
	ASSERT_EQ(feed("ms key 5 T60 F7 C99 MA I q Oxy k c\r\nhello\r\n"), 1);
	EXPECT_EQ(r.cmd, MC_CMD_MS);
	EXPECT_EQ(key(), "key");
	EXPECT_EQ(r.value_len, 5u);
	EXPECT_EQ(value_str(r, &in), "hello");
	EXPECT_EQ(r.exptime, 60);
	EXPECT_EQ(r.flags, 7u);
	EXPECT_EQ(r.cas, 99u);
	EXPECT_EQ(r.meta.mode, 'A');
	EXPECT_TRUE(r.meta.flags & MC_MF('I'));
	EXPECT_EQ(r.quiet, 1);
	next();
	for (char m : std::string("EAPRS")) {
		ASSERT_EQ(feed(std::string("ms k 1 M") + m + "\r\nx\r\n"), 1);
		EXPECT_EQ(r.meta.mode, m);
		next();
	}
	ASSERT_EQ(feed("ms k 3\r\nab"), -EAGAIN);
	ASSERT_EQ(feed("c\r\n"), 1);
	EXPECT_EQ(value_str(r, &in), "abc");
}

TEST_F(Meta, MdMaMnMe)
{
	ASSERT_EQ(feed("md k q C5 I T30 Oo k\r\n"), 1);
	EXPECT_EQ(r.cmd, MC_CMD_MD);
	EXPECT_EQ(r.cas, 5u);
	EXPECT_EQ(r.quiet, 1);
	next();
	ASSERT_EQ(feed("ma k\r\n"), 1);
	EXPECT_EQ(r.cmd, MC_CMD_MA);
	EXPECT_EQ(r.delta, 1u);
	EXPECT_EQ(r.meta.mode, 0);
	next();
	ASSERT_EQ(feed("ma k MD D10 J20 N0 v t c\r\n"), 1);
	EXPECT_EQ(r.meta.mode, 'D');
	EXPECT_EQ(r.delta, 10u);
	EXPECT_EQ(r.initial, 20u);
	EXPECT_TRUE(r.meta.flags & MC_MF('N'));
	next();
	ASSERT_EQ(feed("mn\r\n"), 1);
	EXPECT_EQ(r.cmd, MC_CMD_MN);
	next();
	ASSERT_EQ(feed("me k\r\n"), 1);
	EXPECT_EQ(r.cmd, MC_CMD_ME);
	EXPECT_EQ(key(), "k");
}

TEST_F(Meta, Errors)
{
	const std::string bad = "CLIENT_ERROR bad command line format\r\n";
	EXPECT_EQ(error_of("mg\r\n"), "ERROR\r\n");
	EXPECT_EQ(error_of("mz k\r\n"), "ERROR\r\n");
	EXPECT_EQ(error_of("mg " + std::string(251, 'k') + " v\r\n"), bad);
	EXPECT_EQ(error_of("mg k v v\r\n"), "CLIENT_ERROR duplicate flag\r\n");
	EXPECT_EQ(error_of("mg k !\r\n"), "CLIENT_ERROR invalid flag\r\n");
	EXPECT_EQ(error_of("mg k Tx\r\n"),
	          "CLIENT_ERROR bad token in command line format\r\n");
	EXPECT_EQ(error_of("mg k O" + std::string(32, 'o') + "\r\n"),
	          "CLIENT_ERROR opaque token too long\r\n");
	EXPECT_EQ(error_of("mg k a b c d e f g h i j k l m n o p q r\r\n"),
	          "CLIENT_ERROR options flags are too long\r\n");
	// memcached's other spelling, for md, ma and ms
	EXPECT_EQ(error_of("md k a b c d e f g h i j k l m n o p q r\r\n"),
	          "CLIENT_ERROR options flags too long\r\n");
	EXPECT_EQ(error_of("ma k a b c d e f g h i j k l m n o p q r\r\n"),
	          "CLIENT_ERROR options flags too long\r\n");
	EXPECT_EQ(error_of("md k v v\r\n"), "CLIENT_ERROR invalid or duplicate flag\r\n");
	EXPECT_EQ(error_of("ma k Dx\r\n"), "CLIENT_ERROR invalid or duplicate flag\r\n");
	EXPECT_EQ(error_of("ma k MX\r\n"), "CLIENT_ERROR invalid mode for ma M token\r\n");
	EXPECT_EQ(error_of("ms k\r\n"), bad);
	EXPECT_EQ(error_of("ms k x\r\n"), bad);
	EXPECT_EQ(error_of("ms k -1\r\n"), bad);
	size_t total = 0;
	// Errors after the length is known swallow the value.
	EXPECT_EQ(error_of("ms k 3 MX\r\nabc\r\n", -EBADMSG, &total),
	          "CLIENT_ERROR invalid mode for ms M token\r\n");
	EXPECT_EQ(total, 16u);
	EXPECT_EQ(error_of("ms k 3 MSS\r\nabc\r\n"),
	          "CLIENT_ERROR incorrect length for M token\r\n");
	EXPECT_EQ(error_of("ms k 3 q\r\nabcd\r\n"), "CLIENT_ERROR bad data chunk\r\n");
	mc_parser_opts o{};
	o.item_max = 2;
	mc_parser_init(&p, &o);
	ASSERT_EQ(feed("ms k 3 q\r\nabc\r\nmn\r\n"), -EMSGSIZE);
	ASSERT_EQ(mc_encode_error(&out, &r), 0);
	EXPECT_EQ(out.str(), "SERVER_ERROR object too large for cache\r\n");
	next();
	ASSERT_EQ(mc_parse(&p, &in, &r), 1);
	EXPECT_EQ(r.cmd, MC_CMD_MN);
}

TEST_F(Meta, StatusAnswers)
{
	EXPECT_EQ(answer("mn\r\n", MC_ST_OK), "MN\r\n");
	EXPECT_EQ(answer("mg k v Oxy k\r\n", MC_ST_NOT_FOUND), "EN Oxy kk\r\n");
	EXPECT_EQ(answer("mg k v q\r\n", MC_ST_NOT_FOUND), "");
	EXPECT_EQ(answer("ms k 1 c Oq k\r\nx\r\n", MC_ST_OK, 42), "HD c42 Oq kk\r\n");
	EXPECT_EQ(answer("ms k 1 q\r\nx\r\n", MC_ST_OK), "");
	EXPECT_EQ(answer("ms k 1 q\r\nx\r\n", MC_ST_NOT_STORED), "NS\r\n");
	EXPECT_EQ(answer("ms k 1 C1\r\nx\r\n", MC_ST_EXISTS), "EX\r\n");
	EXPECT_EQ(answer("ms k 1 MR\r\nx\r\n", MC_ST_NOT_FOUND), "NF\r\n");
	EXPECT_EQ(answer("md k q\r\n", MC_ST_OK), "");
	EXPECT_EQ(answer("md k Oz\r\n", MC_ST_NOT_FOUND), "NF Oz\r\n");
	EXPECT_EQ(answer("ma k q\r\n", MC_ST_DELTA_BADVAL),
	          "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
	EXPECT_EQ(answer("ms k 1 q\r\nx\r\n", MC_ST_E2BIG),
	          "SERVER_ERROR object too large for cache\r\n");
}

TEST_F(Meta, HitAnswers)
{
	mc_item_info info{};
	info.flags = 3;
	info.size = 5;
	info.cas = 77;
	info.ttl = -1;
	info.last_access = 12;
	info.fetched = 1;
	bp_slice v = make_slice("hello");
	ASSERT_EQ(feed("mg key s v t c f l h Oop k\r\n"), 1);
	ASSERT_EQ(mc_meta_encode_hit(&out, &r, &info, &v), 0);
	EXPECT_EQ(out.str(), "VA 5 s5 t-1 c77 f3 l12 h1 Oop kkey\r\nhello\r\n");
	next();
	Chain o2;
	info.ttl = 30;
	info.won = 1;
	info.stale = 1;
	info.token_sent = 1;
	ASSERT_EQ(feed("mg key t q\r\n"), 1); // q does not hide hits
	ASSERT_EQ(mc_meta_encode_hit(&o2, &r, &info, &v), 0);
	EXPECT_EQ(o2.str(), "HD t30 Z X W\r\n");
	bp_slice_release(&v);
	next();
	Chain o3;
	ASSERT_EQ(feed("ma k v c t Oa k\r\n"), 1);
	ASSERT_EQ(mc_meta_encode_arith(&o3, &r, &info, 1234), 0);
	EXPECT_EQ(o3.str(), "VA 4 c77 t30 Oa kk\r\n1234\r\n");
	next();
	Chain o4;
	ASSERT_EQ(feed("ma k\r\n"), 1);
	ASSERT_EQ(mc_meta_encode_arith(&o4, &r, &info, 1), 0);
	EXPECT_EQ(o4.str(), "HD\r\n");
	next();
	Chain o5;
	ASSERT_EQ(feed("ma k q v\r\n"), 1);
	ASSERT_EQ(mc_meta_encode_arith(&o5, &r, &info, 1), 0);
	EXPECT_EQ(o5.len(), 0u);
}

// mg applies T and a vivifying N where they stand, as memcached does: a t
// before them reports the time to live before them, a t after them the
// one they set. ma reports its one time to live wherever T is. h, l and
// the Z X W tokens come from the store (struct mc_item_info).
TEST_F(Meta, MgTtlFollowsTAndNInOrder)
{
	mc_item_info info{};
	info.ttl = 100;
	info.ttl_touch = 30;
	info.ttl_vivify = 60;
	const struct {
		const char *line;
		uint8_t vivified;
		const char *want;
	} cases[] = {
		{"mg k t T30\r\n", 0, "HD t100\r\n"},
		{"mg k T30 t\r\n", 0, "HD t30\r\n"},
		{"mg k t N60\r\n", 0, "HD t100\r\n"},
		{"mg k N60 t\r\n", 0, "HD t100\r\n"}, /* N found the item */
		{"mg k N60 t\r\n", 1, "HD t60 W\r\n"},
		{"mg k t N60\r\n", 1, "HD t100 W\r\n"},
		{"mg k N60 T30 t\r\n", 1, "HD t30 W\r\n"},
		{"mg k T30 N60 t\r\n", 1, "HD t60 W\r\n"},
		{"mg k T30 t h l\r\n", 0, "HD t30 h1 l7\r\n"},
	};
	for (const auto &tc : cases) {
		Chain o;
		info.vivified = tc.vivified;
		info.won = tc.vivified;
		info.fetched = 1;
		info.last_access = 7;
		ASSERT_EQ(feed(tc.line), 1) << tc.line;
		ASSERT_EQ(mc_meta_encode_hit(&o, &r, &info, nullptr), 0);
		EXPECT_EQ(o.str(), tc.want) << tc.line;
		next();
	}
	Chain o;
	ASSERT_EQ(feed("ma k t T30\r\n"), 1);
	ASSERT_EQ(mc_meta_encode_arith(&o, &r, &info, 1), 0);
	EXPECT_EQ(o.str(), "HD t100\r\n");
	next();
	Chain o2;
	info = mc_item_info{};
	info.token_sent = 1;
	info.stale = 1;
	ASSERT_EQ(feed("mg k v\r\n"), 1);
	bp_slice v = make_slice("hi");
	ASSERT_EQ(mc_meta_encode_hit(&o2, &r, &info, &v), 0);
	EXPECT_EQ(o2.str(), "VA 2 Z X\r\nhi\r\n");
	bp_slice_release(&v);
}

// Every row of MC_META_FLAGS parses on every keyed meta command (memcached
// accepts any flag on any of them), sets its bit and its place in order.
// The key is valid base64 ("key"), for b.
TEST_F(Meta, EveryTableFlagParsesOnEveryCommand)
{
	struct Row {
		char letter;
		std::string arg;
	};
	const Row rows[] = {
#define ROW(l, arg, field, err, for_, ret, in, help) {l, #arg},
		MC_META_FLAGS(ROW)
#undef ROW
	};
	for (const Row &row : rows) {
		for (std::string cmd : {"mg", "ms", "md", "ma"}) {
			std::string tok(1, row.letter);
			if (row.arg == "I32" || row.arg == "U32" || row.arg == "U64")
				tok += "30";
			else if (row.arg == "OPAQUE")
				tok += "xy";
			else if (row.arg == "MODE")
				tok += cmd == "ma" ? "I" : "E";
			std::string line = cmd + " a2V5" + (cmd == "ms" ? " 1 " : " ") + tok +
			                   "\r\n" + (cmd == "ms" ? "x\r\n" : "");
			Chain c;
			mc_parser q;
			mc_parser_init(&q, nullptr);
			add_block(&c, line);
			ASSERT_EQ(mc_parse(&q, &c, &r), 1) << line;
			EXPECT_TRUE(r.meta.flags & MC_MF(row.letter)) << line;
			EXPECT_EQ(std::string(r.meta.order, r.meta.norder), tok.substr(0, 1));
		}
	}
	// A letter that is not in the table.
	EXPECT_EQ(error_of("mg k x\r\n"), "CLIENT_ERROR invalid flag\r\n");
}

// The cas to compare is 0 unless C was given (the server relies on it).
TEST_F(Meta, CasIsZeroWithoutC)
{
	ASSERT_EQ(feed("md k C5\r\n"), 1);
	EXPECT_EQ(r.cas, 5u);
	next();
	ASSERT_EQ(feed("md k\r\n"), 1);
	EXPECT_EQ(r.cas, 0u);
	next();
	ASSERT_EQ(feed("ma k C7\r\n"), 1);
	next();
	ASSERT_EQ(feed("ma k\r\n"), 1);
	EXPECT_EQ(r.cas, 0u);
	next();
	ASSERT_EQ(feed("ms k 1 C9\r\nx\r\n"), 1);
	next();
	ASSERT_EQ(feed("ms k 3\r\nab"), -EAGAIN); // the value arrives later
	ASSERT_EQ(feed("c\r\n"), 1);
	EXPECT_EQ(r.cas, 0u);
}

// Each answer carries only the return flags the table gives it.
TEST_F(Meta, ReturnFlagsPerAnswer)
{
	EXPECT_EQ(answer("mg k c f h k l s t v Oz\r\n", MC_ST_NOT_FOUND), "EN kk Oz\r\n");
	EXPECT_EQ(answer("md k c t k\r\n", MC_ST_OK), "HD kk\r\n");
	EXPECT_EQ(answer("ms k 1 s f t c h l\r\nx\r\n", MC_ST_OK, 42), "HD c42\r\n");
	EXPECT_EQ(answer("ms k 1 c\r\nx\r\n", MC_ST_NOT_STORED, 0), "NS c0\r\n");
	mc_item_info info{};
	info.cas = 77;
	info.ttl = 30;
	info.size = 5;
	ASSERT_EQ(feed("ma k s f h l c t u\r\n"), 1);
	ASSERT_EQ(mc_meta_encode_arith(&out, &r, &info, 1), 0);
	EXPECT_EQ(out.str(), "HD c77 t30\r\n");
}

TEST(Commands, ClassesComeFromTheTable)
{
	for (int c = 0; c < MC_CMD__COUNT; c++) {
		mc_cmd cmd = (mc_cmd)c;
		bool store = cmd == MC_CMD_SET || cmd == MC_CMD_ADD ||
		             cmd == MC_CMD_REPLACE || cmd == MC_CMD_APPEND ||
		             cmd == MC_CMD_PREPEND || cmd == MC_CMD_CAS || cmd == MC_CMD_MS;
		bool meta = cmd == MC_CMD_MG || cmd == MC_CMD_MS || cmd == MC_CMD_MD ||
		            cmd == MC_CMD_MA || cmd == MC_CMD_MN || cmd == MC_CMD_ME;
		EXPECT_EQ(mc_cmd_is_store(cmd) != 0, store) << mc_cmd_name(cmd);
		EXPECT_EQ(mc_cmd_is_meta(cmd) != 0, meta) << mc_cmd_name(cmd);
	}
}

} // namespace
