// Classic text protocol: golden parses, error lines, answers.
#include "util.h"

using namespace mctest;

namespace {

struct Text : ::testing::Test {
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
	std::string val() { return value_str(r, &in); }
	std::vector<std::string> keys()
	{
		std::vector<std::string> v;
		size_t pos = 0;
		const char *k;
		size_t kl;
		while (mc_req_next_key(&p, &in, &r, &pos, &k, &kl) == 1)
			v.emplace_back(k, kl);
		return v;
	}
	// Parses one complete line expecting an error; returns the answer.
	std::string error_of(const std::string &line, int want_rc = -EBADMSG)
	{
		Chain c, o;
		mc_parser q;
		mc_parser_init(&q, nullptr);
		add_block(&c, line);
		EXPECT_EQ(mc_parse(&q, &c, &r), want_rc) << line;
		EXPECT_EQ(mc_encode_error(&o, &r), 0);
		return o.str();
	}
	void next() { mc_parser_consume(&p, &in, &r); }
};

TEST_F(Text, GetManyKeys)
{
	ASSERT_EQ(feed("get a bb  ccc\r\n"), 1);
	EXPECT_EQ(mc_parser_proto(&p), MC_PROTO_TEXT);
	EXPECT_EQ(r.cmd, MC_CMD_GET);
	EXPECT_EQ(r.ret_cas, 0);
	EXPECT_EQ(r.nkeys, 3u);
	EXPECT_EQ(key(), "a");
	EXPECT_EQ(keys(), (std::vector<std::string>{"a", "bb", "ccc"}));
	EXPECT_EQ(r.total, 15u);
}

TEST_F(Text, GetsGatGatsAndBareNewline)
{
	ASSERT_EQ(feed("gets k1 k2\n"), 1);
	EXPECT_EQ(r.ret_cas, 1);
	EXPECT_EQ(r.total, 11u);
	EXPECT_EQ(keys(), (std::vector<std::string>{"k1", "k2"}));
	next();
	ASSERT_EQ(feed("gat 100 k1\r\n"), 1);
	EXPECT_EQ(r.cmd, MC_CMD_GAT);
	EXPECT_EQ(r.exptime, 100);
	EXPECT_EQ(r.ret_cas, 0);
	EXPECT_EQ(keys(), (std::vector<std::string>{"k1"}));
	next();
	ASSERT_EQ(feed("gats -1 x y\r\n"), 1);
	EXPECT_EQ(r.ret_cas, 1);
	EXPECT_EQ(r.exptime, -1);
	EXPECT_EQ(r.nkeys, 2u);
	next();
	ASSERT_EQ(feed("gat 5\r\n"), 1); // memcached answers END
	EXPECT_EQ(r.nkeys, 0u);
}

TEST_F(Text, StorageCommands)
{
	struct {
		const char *name;
		mc_cmd cmd;
	} cases[] = {{"set", MC_CMD_SET},         {"add", MC_CMD_ADD},
	             {"replace", MC_CMD_REPLACE}, {"append", MC_CMD_APPEND},
	             {"prepend", MC_CMD_PREPEND}};
	for (auto &c : cases) {
		std::string line = std::string(c.name) + " key 4294967295 -5 5\r\n";
		ASSERT_EQ(feed(line + "hello\r\n"), 1) << c.name;
		EXPECT_EQ(r.cmd, c.cmd);
		EXPECT_EQ(r.flags, 4294967295u);
		EXPECT_EQ(r.exptime, -5);
		EXPECT_EQ(r.noreply, 0);
		EXPECT_EQ(key(), "key");
		EXPECT_EQ(val(), "hello");
		EXPECT_EQ(r.value_off, line.size());
		EXPECT_EQ(r.total, line.size() + 7);
		next();
	}
	ASSERT_EQ(feed("cas key 1 2 3 987654321 noreply\r\nabc\r\n"), 1);
	EXPECT_EQ(r.cmd, MC_CMD_CAS);
	EXPECT_EQ(r.cas, 987654321u);
	EXPECT_EQ(r.noreply, 1);
	EXPECT_EQ(val(), "abc");
	next();
	ASSERT_EQ(feed("set k 0 0 0\r\n\r\n"), 1);
	EXPECT_EQ(r.value_len, 0u);
}

TEST_F(Text, ValueArrivesLaterWithoutReparsingTheLine)
{
	ASSERT_EQ(feed("set k 0 0 10\r\n01234"), -EAGAIN);
	EXPECT_EQ(p.need, 14u + 12);
	EXPECT_EQ(feed("56789\r"), -EAGAIN);
	ASSERT_EQ(feed("\nget k\r\n"), 1);
	EXPECT_EQ(val(), "0123456789");
	next();
	ASSERT_EQ(mc_parse(&p, &in, &r), 1);
	EXPECT_EQ(r.cmd, MC_CMD_GET);
}

TEST_F(Text, OtherCommands)
{
	ASSERT_EQ(feed("delete k\r\n"), 1);
	EXPECT_EQ(r.cmd, MC_CMD_DELETE);
	EXPECT_EQ(key(), "k");
	next();
	ASSERT_EQ(feed("delete k 0 noreply\r\n"), 1);
	EXPECT_EQ(r.noreply, 1);
	next();
	ASSERT_EQ(feed("incr n 18446744073709551615\r\n"), 1);
	EXPECT_EQ(r.cmd, MC_CMD_INCR);
	EXPECT_EQ(r.delta, 18446744073709551615ull);
	next();
	ASSERT_EQ(feed("decr n 3 noreply\r\n"), 1);
	EXPECT_EQ(r.cmd, MC_CMD_DECR);
	EXPECT_EQ(r.noreply, 1);
	next();
	ASSERT_EQ(feed("touch k 60\r\n"), 1);
	EXPECT_EQ(r.cmd, MC_CMD_TOUCH);
	EXPECT_EQ(r.exptime, 60);
	next();
	ASSERT_EQ(feed("flush_all\r\n"), 1);
	EXPECT_EQ(r.cmd, MC_CMD_FLUSH);
	EXPECT_EQ(r.has_exptime, 0);
	next();
	ASSERT_EQ(feed("flush_all 30 noreply\r\n"), 1);
	EXPECT_EQ(r.has_exptime, 1);
	EXPECT_EQ(r.exptime, 30);
	EXPECT_EQ(r.noreply, 1);
	next();
	ASSERT_EQ(feed("flush_all noreply\r\n"), 1);
	EXPECT_EQ(r.has_exptime, 0);
	EXPECT_EQ(r.noreply, 1);
	next();
	ASSERT_EQ(feed("stats\r\n"), 1);
	EXPECT_EQ(r.cmd, MC_CMD_STATS);
	EXPECT_EQ(r.key_len, 0u);
	next();
	ASSERT_EQ(feed("stats detail dump\r\n"), 1);
	EXPECT_EQ(key(), "detail dump");
	next();
	ASSERT_EQ(feed("version\r\n"), 1);
	EXPECT_EQ(r.cmd, MC_CMD_VERSION);
	next();
	ASSERT_EQ(feed("verbosity 1 noreply\r\n"), 1);
	EXPECT_EQ(r.level, 1u);
	EXPECT_EQ(r.noreply, 1);
	next();
	ASSERT_EQ(feed("quit\r\n"), 1);
	EXPECT_EQ(r.cmd, MC_CMD_QUIT);
	EXPECT_EQ(r.close, 1);
}

TEST_F(Text, ErrorLines)
{
	const std::string bad = "CLIENT_ERROR bad command line format\r\n";
	EXPECT_EQ(error_of("bogus\r\n"), "ERROR\r\n");
	EXPECT_EQ(error_of("\r\n"), "ERROR\r\n");
	EXPECT_EQ(error_of("x\r\n"), "ERROR\r\n");
	EXPECT_EQ(error_of("get\r\n"), "ERROR\r\n");
	EXPECT_EQ(error_of("set k 0 0\r\n"), "ERROR\r\n");
	EXPECT_EQ(error_of("set k 0 0 1 noreply extra\r\n"), "ERROR\r\n");
	EXPECT_EQ(error_of("incr k\r\n"), "ERROR\r\n");
	EXPECT_EQ(error_of("verbosity\r\n"), "ERROR\r\n");
	EXPECT_EQ(error_of("flush_all 1 2 3\r\n"), "ERROR\r\n");
	EXPECT_EQ(error_of("get " + std::string(251, 'k') + "\r\n"), bad);
	EXPECT_EQ(error_of("set " + std::string(251, 'k') + " 0 0 1\r\n"), bad);
	EXPECT_EQ(error_of("set k x 0 1\r\n"), bad);
	EXPECT_EQ(error_of("set k -1 0 1\r\n"), bad);
	EXPECT_EQ(error_of("set k 0 0 -1\r\n"), bad);
	EXPECT_EQ(error_of("set k 0 0 99999999999\r\n"), bad);
	EXPECT_EQ(error_of("cas k 0 0 1 x\r\n"), bad);
	EXPECT_EQ(error_of("verbosity x\r\n"), bad);
	EXPECT_EQ(error_of("touch k x\r\n"),
	          "CLIENT_ERROR invalid exptime argument\r\n");
	EXPECT_EQ(error_of("gat x k\r\n"),
	          "CLIENT_ERROR invalid exptime argument\r\n");
	EXPECT_EQ(error_of("flush_all x\r\n"),
	          "CLIENT_ERROR invalid exptime argument\r\n");
	EXPECT_EQ(error_of("incr k -1\r\n"),
	          "CLIENT_ERROR invalid numeric delta argument\r\n");
	EXPECT_EQ(error_of("incr k 18446744073709551616\r\n"),
	          "CLIENT_ERROR invalid numeric delta argument\r\n");
	EXPECT_EQ(error_of("delete k 1\r\n"),
	          "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n");
	EXPECT_EQ(error_of("delete k noreply 0\r\n"),
	          "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n");
	EXPECT_EQ(error_of("delete k 1 noreply\r\n"), ""); // noreply: silent
	// noreply silences errors too, as in memcached
	EXPECT_EQ(error_of("set k x 0 1 noreply\r\n"), "");
}

TEST_F(Text, BadDataChunkConsumesTheBlockAndKeepsGoing)
{
	ASSERT_EQ(feed("set k 0 0 3\r\nabcd\r\nget k\r\n"), -EBADMSG);
	EXPECT_EQ(r.err, MC_ERR_BAD_CHUNK);
	EXPECT_EQ(r.close, 0);
	EXPECT_EQ(r.total, 13u + 5);
	ASSERT_EQ(mc_encode_error(&out, &r), 0);
	EXPECT_EQ(out.str(), "CLIENT_ERROR bad data chunk\r\n");
	next();
	// memcached reads on from there: "\r\nget k" -> an empty line first.
	ASSERT_EQ(mc_parse(&p, &in, &r), -EBADMSG);
	EXPECT_EQ(r.err, MC_ERR_UNKNOWN_COMMAND);
	next();
	ASSERT_EQ(mc_parse(&p, &in, &r), 1);
	EXPECT_EQ(r.cmd, MC_CMD_GET);
}

TEST_F(Text, TooLargeIsSwallowedAndConnectionKept)
{
	mc_parser_opts o{};
	o.item_max = 100;
	mc_parser_init(&p, &o);
	std::string line = "set big 0 0 5000\r\n";
	ASSERT_EQ(feed(line + std::string(1000, 'x')), -EMSGSIZE);
	EXPECT_EQ(r.err, MC_ERR_E2BIG);
	EXPECT_EQ(r.close, 0);
	EXPECT_EQ(r.cmd, MC_CMD_SET);
	EXPECT_EQ(key(), "big");
	EXPECT_EQ(r.total, line.size() + 5002);
	ASSERT_EQ(mc_encode_error(&out, &r), 0);
	EXPECT_EQ(out.str(), "SERVER_ERROR object too large for cache\r\n");
	next();
	EXPECT_EQ(feed(std::string(3000, 'x')), -EAGAIN);
	ASSERT_EQ(feed(std::string(1000, 'x') + "\r\nget a\r\n"), 1);
	EXPECT_EQ(r.cmd, MC_CMD_GET);
	EXPECT_EQ(key(), "a");
}

TEST_F(Text, AbsurdLengthCloses)
{
	mc_parser_opts o{};
	o.body_max = 1 << 20;
	mc_parser_init(&p, &o);
	ASSERT_EQ(feed("set k 0 0 2000000000\r\n"), -EMSGSIZE);
	EXPECT_EQ(r.err, MC_ERR_BODY_TOO_LARGE);
	EXPECT_EQ(r.close, 1);
}

TEST_F(Text, LineTooLongCloses)
{
	mc_parser_opts o{};
	o.line_max = 64;
	mc_parser_init(&p, &o);
	EXPECT_EQ(feed("set " + std::string(40, 'k')), -EAGAIN);
	ASSERT_EQ(feed(std::string(40, 'k')), -EMSGSIZE);
	EXPECT_EQ(r.err, MC_ERR_LINE_TOO_LONG);
	EXPECT_EQ(r.close, 1);
	ASSERT_EQ(mc_encode_error(&out, &r), 0);
	EXPECT_EQ(out.str(), "CLIENT_ERROR line too long\r\n");
}

// A retrieval line's keys are bound by line_max + item_max, not line_max
// (memcached reads a get line of any length).
TEST_F(Text, RetrievalLinesMayExceedTheLineLimit)
{
	for (const char *cmd : {"get ", "gets ", "gat 10 ", "gats 10 "}) {
		mc_parser_opts o{};
		o.line_max = 64;
		o.item_max = 256;
		mc_parser q;
		mc_parser_init(&q, &o);
		Chain c;
		std::string keys;
		for (int i = 0; i < 30; i++)
			keys += "key" + std::to_string(100 + i) + " ";
		add_block(&c, cmd + keys.substr(0, 100));
		EXPECT_EQ(mc_parse(&q, &c, &r), -EAGAIN) << cmd;
		add_block(&c, keys.substr(100) + "\r\n");
		ASSERT_EQ(mc_parse(&q, &c, &r), 1) << cmd;
		EXPECT_EQ(r.nkeys, 30u);
		mc_parser_consume(&q, &c, &r);
		add_block(&c, cmd + std::string(400, 'k'));
		EXPECT_EQ(mc_parse(&q, &c, &r), -EMSGSIZE) << cmd;
		EXPECT_EQ(r.err, MC_ERR_LINE_TOO_LONG);
	}
}

// An unknown command whose last word starts with "HTTP/" closes the
// connection without an answer, as memcached does; other unknown lines
// are ERROR.
TEST_F(Text, HttpRequestLineClosesSilently)
{
	for (const char *line : {"GET / HTTP/1.0\r\n", "POST /x HTTP/1.1\r\n",
	                         "FOO a b HTTP/2 \r\n", "xy HTTP/\n"}) {
		Chain c, o;
		add_block(&c, line);
		mc_parser q;
		mc_parser_init(&q, nullptr);
		mc_request req;
		ASSERT_EQ(mc_parse(&q, &c, &req), -EBADMSG) << line;
		EXPECT_EQ(req.err, MC_ERR_HTTP) << line;
		EXPECT_EQ(req.close, 1);
		ASSERT_EQ(mc_encode_error(&o, &req), 0);
		EXPECT_EQ(o.str(), "") << line;
	}
	EXPECT_EQ(error_of("GET / HTTP\r\n"), "ERROR\r\n");
	EXPECT_EQ(error_of("G / HTTP/1.0\r\n"), "ERROR\r\n");
	EXPECT_EQ(error_of("GET / HTTP/1.0 x\r\n"), "ERROR\r\n");
}

TEST_F(Text, SlowClientIsLinear)
{
	// One byte per block: each call looks only at the new byte.
	std::string line = "get " + std::string(200, 'k') + "\r\n";
	size_t prev_scan = 0;
	for (size_t i = 0; i + 1 < line.size(); i++) {
		ASSERT_EQ(feed(line.substr(i, 1)), -EAGAIN);
		EXPECT_EQ(p.scan, i + 1);
		EXPECT_GE(p.scan, prev_scan);
		prev_scan = p.scan;
	}
	ASSERT_EQ(feed("\n"), 1);
	EXPECT_EQ(r.key_len, 200u);
}

// --- answers ---------------------------------------------------------------

TEST_F(Text, ValueAndEndGolden)
{
	bp_slice v = make_slice("hello");
	ASSERT_EQ(feed("get k\r\n"), 1);
	ASSERT_EQ(mc_text_encode_value(&out, &r, "k", 1, 42, 7, &v), 0);
	ASSERT_EQ(mc_text_encode_end(&out), 0);
	EXPECT_EQ(out.str(), "VALUE k 42 5\r\nhello\r\nEND\r\n");
	next();
	Chain o2;
	ASSERT_EQ(feed("gets k\r\n"), 1);
	ASSERT_EQ(mc_text_encode_value(&o2, &r, "k", 1, 0, 18446744073709551615ull, &v), 0);
	ASSERT_EQ(mc_encode_status(&o2, &r, MC_ST_NOT_FOUND, 0), 0);
	EXPECT_EQ(o2.str(), "VALUE k 0 5 18446744073709551615\r\nhello\r\nEND\r\n");
	bp_slice_release(&v);
}

TEST_F(Text, StatusLinesGolden)
{
	struct {
		const char *wire;
		mc_status st;
		const char *want;
	} cases[] = {
		{"set k 0 0 1\r\nx\r\n", MC_ST_OK, "STORED\r\n"},
		{"add k 0 0 1\r\nx\r\n", MC_ST_NOT_STORED, "NOT_STORED\r\n"},
		{"cas k 0 0 1 5\r\nx\r\n", MC_ST_EXISTS, "EXISTS\r\n"},
		{"cas k 0 0 1 5\r\nx\r\n", MC_ST_NOT_FOUND, "NOT_FOUND\r\n"},
		{"set k 0 0 1\r\nx\r\n", MC_ST_E2BIG, "SERVER_ERROR object too large for cache\r\n"},
		{"set k 0 0 1\r\nx\r\n", MC_ST_ENOMEM, "SERVER_ERROR out of memory storing object\r\n"},
		{"set k 0 0 1 noreply\r\nx\r\n", MC_ST_OK, ""},
		{"delete k\r\n", MC_ST_OK, "DELETED\r\n"},
		{"delete k\r\n", MC_ST_NOT_FOUND, "NOT_FOUND\r\n"},
		{"touch k 1\r\n", MC_ST_OK, "TOUCHED\r\n"},
		{"incr k 1\r\n", MC_ST_NOT_FOUND, "NOT_FOUND\r\n"},
		{"incr k 1\r\n", MC_ST_DELTA_BADVAL,
		 "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"},
		{"flush_all\r\n", MC_ST_OK, "OK\r\n"},
		{"verbosity 1\r\n", MC_ST_OK, "OK\r\n"},
		{"get k\r\n", MC_ST_NOT_FOUND, "END\r\n"},
		{"stats nope\r\n", MC_ST_NOT_FOUND, "ERROR\r\n"},
		{"stats\r\n", MC_ST_OK, "END\r\n"},
	};
	for (auto &c : cases) {
		Chain i, o;
		mc_parser q;
		mc_parser_init(&q, nullptr);
		add_block(&i, c.wire);
		ASSERT_EQ(mc_parse(&q, &i, &r), 1) << c.wire;
		ASSERT_EQ(mc_encode_status(&o, &r, c.st, 0), 0);
		EXPECT_EQ(o.str(), c.want) << c.wire;
	}
}

TEST_F(Text, NumberVersionStatGolden)
{
	ASSERT_EQ(feed("incr k 1\r\n"), 1);
	ASSERT_EQ(mc_text_encode_number(&out, &r, 18446744073709551615ull), 0);
	ASSERT_EQ(mc_text_encode_version(&out, "1.6.18"), 0);
	ASSERT_EQ(mc_text_encode_stat(&out, "pid", 3, "42", 2), 0);
	ASSERT_EQ(mc_text_encode_end(&out), 0);
	EXPECT_EQ(out.str(), "18446744073709551615\r\nVERSION 1.6.18\r\nSTAT pid 42\r\nEND\r\n");
	next();
	Chain o2;
	ASSERT_EQ(feed("decr k 1 noreply\r\n"), 1);
	ASSERT_EQ(mc_text_encode_number(&o2, &r, 0), 0);
	EXPECT_EQ(o2.len(), 0u);
}

} // namespace
