// Binary protocol: golden parses per opcode, every error path, answers.
#include "util.h"

using namespace mctest;

namespace {

struct Bin : ::testing::Test {
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
};

const std::string k5 = "hello";

TEST_F(Bin, DetectsBinaryFromFirstByte)
{
	EXPECT_EQ(mc_parser_proto(&p), MC_PROTO_AUTO);
	ASSERT_EQ(feed(bin_req(0x0a, "", "", "")), 1);
	EXPECT_EQ(mc_parser_proto(&p), MC_PROTO_BINARY);
	EXPECT_EQ(r.cmd, MC_CMD_NOOP);
	EXPECT_EQ(r.total, 24u);
}

TEST_F(Bin, Get)
{
	ASSERT_EQ(feed(bin_req(0x00, "", k5, "", 0xdeadbeef, 7)), 1);
	EXPECT_EQ(r.cmd, MC_CMD_GET);
	EXPECT_EQ(r.proto, MC_PROTO_BINARY);
	EXPECT_EQ(r.opcode, 0x00);
	EXPECT_EQ(r.opaque, 0xdeadbeefu);
	EXPECT_EQ(r.cas, 7u);
	EXPECT_EQ(r.quiet, 0);
	EXPECT_EQ(r.ret_key, 0);
	EXPECT_EQ(key(), k5);
	EXPECT_EQ(r.total, 29u);
	EXPECT_EQ(r.value_len, 0u);
}

TEST_F(Bin, QuietAndKeyVariantsOfGetAndGat)
{
	struct {
		uint8_t op;
		mc_cmd cmd;
		int quiet, rk;
		bool touch;
	} cases[] = {
		{0x09, MC_CMD_GET, 1, 0, false}, {0x0c, MC_CMD_GET, 0, 1, false},
		{0x0d, MC_CMD_GET, 1, 1, false}, {0x1d, MC_CMD_GAT, 0, 0, true},
		{0x1e, MC_CMD_GAT, 1, 0, true},  {0x23, MC_CMD_GAT, 0, 1, true},
		{0x24, MC_CMD_GAT, 1, 1, true},  {0x1c, MC_CMD_TOUCH, 0, 0, true},
	};
	for (auto &c : cases) {
		SCOPED_TRACE(c.op);
		ASSERT_EQ(feed(bin_req(c.op, c.touch ? be32(3600) : "", k5, "")), 1);
		EXPECT_EQ(r.cmd, c.cmd);
		EXPECT_EQ(r.quiet, c.quiet);
		EXPECT_EQ(r.ret_key, c.rk);
		EXPECT_EQ(r.opcode, c.op);
		EXPECT_EQ(key(), k5);
		if (c.touch) {
			EXPECT_EQ(r.exptime, 3600);
		}
		mc_parser_consume(&p, &in, &r);
		EXPECT_EQ(in.len(), 0u);
	}
}

TEST_F(Bin, SetFamily)
{
	struct {
		uint8_t op;
		mc_cmd cmd;
		int quiet;
	} cases[] = {
		{0x01, MC_CMD_SET, 0},     {0x11, MC_CMD_SET, 1},
		{0x02, MC_CMD_ADD, 0},     {0x12, MC_CMD_ADD, 1},
		{0x03, MC_CMD_REPLACE, 0}, {0x13, MC_CMD_REPLACE, 1},
	};
	for (auto &c : cases) {
		SCOPED_TRACE(c.op);
		ASSERT_EQ(feed(bin_req(c.op, be32(0xcafef00d) + be32(2592001), k5,
		                       "world!", 9, 1234)),
		          1);
		EXPECT_EQ(r.cmd, c.cmd);
		EXPECT_EQ(r.quiet, c.quiet);
		EXPECT_EQ(r.flags, 0xcafef00du);
		EXPECT_EQ(r.exptime, 2592001);
		EXPECT_EQ(r.cas, 1234u);
		EXPECT_EQ(r.opaque, 9u);
		EXPECT_EQ(key(), k5);
		EXPECT_EQ(val(), "world!");
		EXPECT_EQ(r.value_off, 24u + 8 + 5);
		EXPECT_EQ(r.total, 24u + 8 + 5 + 6);
		mc_parser_consume(&p, &in, &r);
	}
}

TEST_F(Bin, SetWithEmptyValue)
{
	ASSERT_EQ(feed(bin_req(0x01, be32(0) + be32(0), k5, "")), 1);
	EXPECT_EQ(r.value_len, 0u);
	EXPECT_EQ(val(), "");
}

TEST_F(Bin, AppendPrepend)
{
	for (uint8_t op : {0x0e, 0x0f, 0x19, 0x1a}) {
		ASSERT_EQ(feed(bin_req(op, "", k5, "tail")), 1);
		EXPECT_EQ(r.cmd, (op == 0x0e || op == 0x19) ? MC_CMD_APPEND
		                                            : MC_CMD_PREPEND);
		EXPECT_EQ(r.quiet, op > 0x10);
		EXPECT_EQ(val(), "tail");
		mc_parser_consume(&p, &in, &r);
	}
}

TEST_F(Bin, DeleteWithCas)
{
	ASSERT_EQ(feed(bin_req(0x04, "", k5, "", 1, 55)), 1);
	EXPECT_EQ(r.cmd, MC_CMD_DELETE);
	EXPECT_EQ(r.cas, 55u);
	mc_parser_consume(&p, &in, &r);
	ASSERT_EQ(feed(bin_req(0x14, "", k5, "")), 1);
	EXPECT_EQ(r.quiet, 1);
}

TEST_F(Bin, IncrDecr)
{
	std::string ext = be64(5) + be64(100) + be32(60);
	ASSERT_EQ(feed(bin_req(0x05, ext, "ctr", "")), 1);
	EXPECT_EQ(r.cmd, MC_CMD_INCR);
	EXPECT_EQ(r.delta, 5u);
	EXPECT_EQ(r.initial, 100u);
	EXPECT_EQ(r.exptime, 60);
	EXPECT_EQ(r.no_create, 0);
	mc_parser_consume(&p, &in, &r);
	ext = be64(1) + be64(0) + be32(0xffffffff);
	ASSERT_EQ(feed(bin_req(0x16, ext, "ctr", "")), 1);
	EXPECT_EQ(r.cmd, MC_CMD_DECR);
	EXPECT_EQ(r.quiet, 1);
	EXPECT_EQ(r.no_create, 1);
}

TEST_F(Bin, QuitFlushNoopVersionStatVerbosity)
{
	ASSERT_EQ(feed(bin_req(0x07, "", "", "")), 1);
	EXPECT_EQ(r.cmd, MC_CMD_QUIT);
	EXPECT_EQ(r.close, 1);
	mc_parser_consume(&p, &in, &r);
	ASSERT_EQ(feed(bin_req(0x17, "", "", "")), 1);
	EXPECT_EQ(r.quiet, 1);
	EXPECT_EQ(r.close, 1);
	mc_parser_consume(&p, &in, &r);
	ASSERT_EQ(feed(bin_req(0x08, "", "", "")), 1);
	EXPECT_EQ(r.cmd, MC_CMD_FLUSH);
	EXPECT_EQ(r.has_exptime, 0);
	mc_parser_consume(&p, &in, &r);
	ASSERT_EQ(feed(bin_req(0x18, be32(10), "", "")), 1);
	EXPECT_EQ(r.has_exptime, 1);
	EXPECT_EQ(r.exptime, 10);
	EXPECT_EQ(r.quiet, 1);
	mc_parser_consume(&p, &in, &r);
	ASSERT_EQ(feed(bin_req(0x0b, "", "", "")), 1);
	EXPECT_EQ(r.cmd, MC_CMD_VERSION);
	mc_parser_consume(&p, &in, &r);
	ASSERT_EQ(feed(bin_req(0x10, "", "", "")), 1);
	EXPECT_EQ(r.cmd, MC_CMD_STATS);
	EXPECT_EQ(r.key_len, 0u);
	mc_parser_consume(&p, &in, &r);
	ASSERT_EQ(feed(bin_req(0x10, "", "settings", "")), 1);
	EXPECT_EQ(key(), "settings");
	mc_parser_consume(&p, &in, &r);
	ASSERT_EQ(feed(bin_req(0x1b, be32(2), "", "")), 1);
	EXPECT_EQ(r.cmd, MC_CMD_VERBOSITY);
	EXPECT_EQ(r.level, 2u);
}

TEST_F(Bin, IncompleteAsksForTheRest)
{
	std::string s = bin_req(0x01, be32(0) + be32(0), k5, std::string(100, 'v'));
	EXPECT_EQ(feed(s.substr(0, 10)), -EAGAIN);
	EXPECT_EQ(p.need, 24u);
	EXPECT_EQ(feed(s.substr(10, 30)), -EAGAIN);
	EXPECT_EQ(p.need, s.size());
	EXPECT_EQ(feed(s.substr(40)), 1);
	EXPECT_EQ(val(), std::string(100, 'v'));
}

// --- error paths -----------------------------------------------------------

TEST_F(Bin, BadMagicClosesSilently)
{
	mc_parser_init(&p, nullptr);
	p.proto = MC_PROTO_BINARY;
	ASSERT_EQ(feed(bin_req(0x00, "", k5, "", 0, 0, 0x81)), -EBADMSG);
	EXPECT_EQ(r.err, MC_ERR_BAD_MAGIC);
	EXPECT_EQ(r.close, 1);
	ASSERT_EQ(mc_encode_error(&out, &r), 0);
	EXPECT_EQ(out.len(), 0u);
}

TEST_F(Bin, WrongShapesAreEinvalAndClose)
{
	std::vector<std::string> bad = {
		bin_req(0x00, be32(1), k5, ""),            // GET with extras
		bin_req(0x00, "", "", ""),                 // GET without key
		bin_req(0x00, "", k5, "x"),                // GET with a value
		bin_req(0x01, be32(0), k5, "v"),           // SET, 4-byte extras
		bin_req(0x01, be32(0) + be32(0), "", "v"), // SET without key
		bin_req(0x05, be64(1), "k", ""),           // INCR, short extras
		bin_req(0x0a, "", "k", ""),                // NOOP with a key
		bin_req(0x0b, be32(1), "", ""),            // VERSION with extras
		bin_req(0x07, "", "", "x"),                // QUIT with a body
		bin_req(0x08, be64(1), "", ""),            // FLUSH, 8-byte extras
		bin_req(0x08, "", "k", ""),                // FLUSH with key
		bin_req(0x1b, "", "", ""),                 // VERBOSITY, no extras
		bin_req(0x1c, "", k5, ""),                 // TOUCH, no extras
		bin_req(0x1d, be32(1), "", ""),            // GAT without key
		bin_req(0x0e, be32(1), k5, "v"),           // APPEND with extras
		bin_req(0x10, be32(1), "", ""),            // STAT with extras
		bin_req(0x04, "", std::string(251, 'k'), ""), // key > 250
	};
	for (size_t i = 0; i < bad.size(); i++) {
		SCOPED_TRACE(i);
		Chain c;
		mc_parser q;
		mc_parser_init(&q, nullptr);
		add_block(&c, bad[i]);
		ASSERT_EQ(mc_parse(&q, &c, &r), -EBADMSG);
		EXPECT_EQ(r.err, MC_ERR_EINVAL);
		EXPECT_EQ(r.close, 1);
		Chain o;
		ASSERT_EQ(mc_encode_error(&o, &r), 0);
		std::string want =
			bin_res(bad[i][1], 0x04, 0, 0, 17, 0, 0) + "Invalid arguments";
		EXPECT_EQ(o.str(), want);
	}
}

TEST_F(Bin, KeyPlusExtrasLongerThanBodyIsUnknownAndCloses)
{
	// memcached answers UNKNOWN_COMMAND (0x81) and closes
	std::string s = bin_req(0x00, "", k5, "");
	s[11] = 2; // bodylen 2 < keylen 5
	ASSERT_EQ(feed(s), -EBADMSG);
	EXPECT_EQ(r.err, MC_ERR_BAD_LENGTHS);
	EXPECT_EQ(r.close, 1);
}

TEST_F(Bin, KeyOf250IsFine)
{
	ASSERT_EQ(feed(bin_req(0x00, "", std::string(250, 'k'), "")), 1);
	EXPECT_EQ(r.key_len, 250u);
}

TEST_F(Bin, UnknownOpcodeSkipsExactlyTheBodyAndKeepsGoing)
{
	// Extras, key and value in an unknown command: all of it is skipped
	// (memcached skips bodylen after key+extras and desynchronises).
	std::string unk = bin_req(0x30, be32(1), "key", "some body", 77);
	std::string next = bin_req(0x00, "", k5, "", 78);
	ASSERT_EQ(feed(unk + next), -EBADMSG);
	EXPECT_EQ(r.err, MC_ERR_UNKNOWN_COMMAND);
	EXPECT_EQ(r.close, 0);
	EXPECT_EQ(r.total, unk.size());
	ASSERT_EQ(mc_encode_error(&out, &r), 0);
	EXPECT_EQ(out.str(), bin_res(0x30, 0x81, 0, 0, 15, 77, 0) + "Unknown command");
	mc_parser_consume(&p, &in, &r);
	ASSERT_EQ(mc_parse(&p, &in, &r), 1);
	EXPECT_EQ(r.cmd, MC_CMD_GET);
	EXPECT_EQ(r.opaque, 78u);
}

// SASL requests are parsed (the server decides whether it authenticates or
// answers them as unknown); extras are refused as for any opcode's shape.
TEST_F(Bin, SaslIsParsed)
{
	const mc_cmd cmds[] = {MC_CMD_SASL_LIST, MC_CMD_SASL_AUTH, MC_CMD_SASL_STEP};
	for (uint8_t op : {0x20, 0x21, 0x22}) {
		ASSERT_EQ(feed(bin_req(op, "", "PLAIN", std::string("\0u\0p", 4), 9)), 1);
		EXPECT_EQ(r.cmd, cmds[op - 0x20]);
		EXPECT_EQ(std::string(r.key, r.key_len), "PLAIN");
		EXPECT_EQ(r.value_len, 4u);
		EXPECT_EQ(r.value_off, 24u + 5u);
		mc_parser_consume(&p, &in, &r);
	}
	ASSERT_EQ(feed(bin_req(0x20, "", "", "", 9)), 1);
	EXPECT_EQ(r.key_len, 0u);
	mc_parser_consume(&p, &in, &r);
	ASSERT_EQ(feed(bin_req(0x21, "abcd", "PLAIN", "x", 9)), -EBADMSG);
	EXPECT_EQ(r.err, MC_ERR_EINVAL);
}

TEST_F(Bin, SaslAnswerCarriesBody)
{
	ASSERT_EQ(feed(bin_req(0x20, "", "", "", 12)), 1);
	ASSERT_EQ(mc_bin_encode_body(&out, &r, MC_ST_OK, "PLAIN", 5), 0);
	EXPECT_EQ(out.str(), bin_res(0x20, 0, 0, 0, 5, 12, 0) + "PLAIN");
}

TEST_F(Bin, TooLargeValueIsE2bigSwallowedAcrossReads)
{
	mc_parser_opts o{};
	o.item_max = 1000;
	mc_parser_init(&p, &o);
	std::string big = bin_req(0x11, be32(0) + be32(0), k5, std::string(5000, 'x'), 3);
	std::string next = bin_req(0x0a, "", "", "", 4);
	// Only the header has arrived: the parser waits for the key (so that
	// the server can drop the stale item however the bytes arrive).
	ASSERT_EQ(feed(big.substr(0, 24)), -EAGAIN);
	EXPECT_EQ(p.need, 24u + 8 + k5.size());
	ASSERT_EQ(feed(big.substr(24, 8 + k5.size())), -EMSGSIZE);
	EXPECT_EQ(r.err, MC_ERR_E2BIG);
	EXPECT_EQ(r.close, 0);
	EXPECT_EQ(r.total, big.size());
	EXPECT_EQ(r.cmd, MC_CMD_SET);
	EXPECT_EQ(key(), k5);
	ASSERT_EQ(mc_encode_error(&out, &r), 0); // quiet: errors still answered
	EXPECT_EQ(out.str(), bin_res(0x11, 0x03, 0, 0, 10, 3, 0) + "Too large.");
	mc_parser_consume(&p, &in, &r);
	EXPECT_EQ(in.len(), 0u);
	size_t at = 24 + 8 + k5.size();
	EXPECT_EQ(feed(big.substr(at, 2000)), -EAGAIN);
	EXPECT_EQ(in.len(), 0u);
	EXPECT_EQ(feed(big.substr(at + 2000) + next), 1);
	EXPECT_EQ(r.cmd, MC_CMD_NOOP);
	EXPECT_EQ(r.opaque, 4u);
	mc_parser_consume(&p, &in, &r);
}

TEST_F(Bin, AbsurdBodyCloses)
{
	std::string s = bin_req(0x01, be32(0) + be32(0), k5, "");
	s[8] = 0x40;
	s[9] = 0x00;
	s[10] = 0x00;
	s[11] = 0x0e; // > 1 GiB
	ASSERT_EQ(feed(s), -EMSGSIZE);
	EXPECT_EQ(r.err, MC_ERR_BODY_TOO_LARGE);
	EXPECT_EQ(r.close, 1);

	mc_parser_opts o{};
	o.body_max = 4096;
	mc_parser q;
	mc_parser_init(&q, &o);
	Chain c;
	add_block(&c, bin_req(0x30, "", "", std::string(5000, 'x')));
	ASSERT_EQ(mc_parse(&q, &c, &r), -EMSGSIZE);
	EXPECT_EQ(r.err, MC_ERR_BODY_TOO_LARGE);
	EXPECT_EQ(r.close, 1);
}

TEST_F(Bin, CountersFollowTheTable)
{
	mc_counters cnt{};
	mc_parser_opts o{};
	o.counters = &cnt;
	mc_parser_init(&p, &o);
	ASSERT_EQ(feed(bin_req(0x00, "", k5, "")), 1);
	mc_parser_consume(&p, &in, &r);
	ASSERT_EQ(feed(bin_req(0x0d, "", k5, "")), 1);
	mc_parser_consume(&p, &in, &r);
	ASSERT_EQ(feed(bin_req(0x31, "", "", "")), -EBADMSG);
	EXPECT_EQ(cnt.cmds[MC_CMD_GET], 2u);
	EXPECT_EQ(cnt.errors[MC_ERR_UNKNOWN_COMMAND], 1u);
	EXPECT_EQ(cnt.bytes, 29u * 2 + 24);
	EXPECT_STREQ(mc_cmd_name(MC_CMD_GET), "get");
}

TEST(BinTable, EveryOpcodeAndItsQuietPartner)
{
	int n = 0;
	for (int op = 0; op < 256; op++) {
		const struct mc_bin_opdesc *d = mc_bin_lookup((uint8_t)op);
		if (!d)
			continue;
		n++;
		EXPECT_EQ(d->opcode, op);
		const struct mc_bin_opdesc *q = mc_bin_lookup(d->partner);
		ASSERT_NE(q, nullptr) << d->name;
		EXPECT_EQ(q->partner, op) << d->name;
		EXPECT_EQ(q->cmd, d->cmd);
		EXPECT_EQ(q->shape, d->shape);
		if (q != d) {
			EXPECT_NE(q->quiet, d->quiet) << d->name;
		}
	}
	EXPECT_EQ(n, 36); // memcached 1.6's 33, and SASL's 3
}

// --- answers ---------------------------------------------------------------

TEST_F(Bin, GetHitGolden)
{
	bp_slice v = make_slice("value!");
	ASSERT_EQ(feed(bin_req(0x00, "", k5, "", 0x01020304)), 1);
	ASSERT_EQ(mc_bin_encode_get_hit(&out, &r, 0xabcd, 99, &v), 0);
	EXPECT_EQ(out.str(), bin_res(0x00, 0, 4, 0, 10, 0x01020304, 99) +
	                             be32(0xabcd) + "value!");
	mc_parser_consume(&p, &in, &r);
	Chain o2;
	ASSERT_EQ(feed(bin_req(0x0d, "", k5, "", 5)), 1); // GETKQ hit: answered
	ASSERT_EQ(mc_bin_encode_get_hit(&o2, &r, 1, 2, &v), 0);
	EXPECT_EQ(o2.str(), bin_res(0x0d, 0, 4, 5, 15, 5, 2) + be32(1) + k5 + "value!");
	mc_parser_consume(&p, &in, &r);
	Chain o3;
	ASSERT_EQ(feed(bin_req(0x1c, be32(10), k5, "", 6)), 1); // TOUCH: no value
	ASSERT_EQ(mc_bin_encode_get_hit(&o3, &r, 1, 2, &v), 0);
	EXPECT_EQ(o3.str(), bin_res(0x1c, 0, 4, 0, 4, 6, 2) + be32(1));
	bp_slice_release(&v);
}

TEST_F(Bin, GetMissGolden)
{
	ASSERT_EQ(feed(bin_req(0x00, "", k5, "", 8)), 1);
	ASSERT_EQ(mc_encode_status(&out, &r, MC_ST_NOT_FOUND, 0), 0);
	EXPECT_EQ(out.str(), bin_res(0x00, 1, 0, 0, 9, 8, 0) + "Not found");
	mc_parser_consume(&p, &in, &r);
	Chain o2;
	ASSERT_EQ(feed(bin_req(0x0c, "", k5, "", 9)), 1); // GETK: key, no text
	ASSERT_EQ(mc_encode_status(&o2, &r, MC_ST_NOT_FOUND, 0), 0);
	EXPECT_EQ(o2.str(), bin_res(0x0c, 1, 0, 5, 5, 9, 0) + k5);
	mc_parser_consume(&p, &in, &r);
	for (uint8_t op : {0x09, 0x0d}) { // quiet misses: nothing
		Chain o3;
		ASSERT_EQ(feed(bin_req(op, "", k5, "")), 1);
		ASSERT_EQ(mc_encode_status(&o3, &r, MC_ST_NOT_FOUND, 0), 0);
		EXPECT_EQ(o3.len(), 0u);
		mc_parser_consume(&p, &in, &r);
	}
	Chain o4;
	ASSERT_EQ(feed(bin_req(0x1e, be32(1), k5, "")), 1); // GATQ miss
	ASSERT_EQ(mc_encode_status(&o4, &r, MC_ST_NOT_FOUND, 0), 0);
	EXPECT_EQ(o4.len(), 0u);
}

TEST_F(Bin, StatusGoldenAndQuietRules)
{
	const std::string ext = be32(0) + be32(0);
	struct {
		uint8_t op;
		mc_status st;
		std::string body; // empty + suppressed => nothing at all
		bool suppressed;
	} cases[] = {
		{0x01, MC_ST_OK, "", false},
		{0x11, MC_ST_OK, "", true},
		{0x11, MC_ST_EXISTS, "Data exists for key.", false},
		{0x12, MC_ST_EXISTS, "Data exists for key.", false},
		{0x13, MC_ST_NOT_FOUND, "Not found", false},
		{0x01, MC_ST_E2BIG, "Too large.", false},
		{0x01, MC_ST_ENOMEM, "Out of memory", false},
		{0x19, MC_ST_NOT_STORED, "Not stored.", false},
	};
	for (auto &c : cases) {
		SCOPED_TRACE(std::to_string(c.op) + " " + std::to_string(c.st));
		Chain o;
		bool ext8 = c.op == 0x01 || c.op == 0x11 || c.op == 0x12 || c.op == 0x13;
		ASSERT_EQ(feed(bin_req(c.op, ext8 ? ext : "", k5, "v", 42)), 1);
		ASSERT_EQ(mc_encode_status(&o, &r, c.st, 777), 0);
		if (c.suppressed) {
			EXPECT_EQ(o.len(), 0u);
		} else {
			uint16_t code = mc_status_bin_code(c.st);
			EXPECT_EQ(o.str(), bin_res(c.op, code, 0, 0, (uint32_t)c.body.size(), 42,
			                           c.st == MC_ST_OK ? 777 : 0) +
			                           c.body);
		}
		mc_parser_consume(&p, &in, &r);
	}
}

TEST_F(Bin, IncrDecrAnswers)
{
	std::string ext = be64(1) + be64(0) + be32(0);
	ASSERT_EQ(feed(bin_req(0x05, ext, "c", "", 3)), 1);
	ASSERT_EQ(mc_bin_encode_incr(&out, &r, 0x1122334455667788ull, 12), 0);
	EXPECT_EQ(out.str(), bin_res(0x05, 0, 0, 0, 8, 3, 12) + be64(0x1122334455667788ull));
	mc_parser_consume(&p, &in, &r);
	Chain o2;
	ASSERT_EQ(feed(bin_req(0x15, ext, "c", "", 3)), 1);
	ASSERT_EQ(mc_bin_encode_incr(&o2, &r, 1, 1), 0);
	EXPECT_EQ(o2.len(), 0u);
	ASSERT_EQ(mc_encode_status(&o2, &r, MC_ST_DELTA_BADVAL, 0), 0);
	EXPECT_EQ(o2.str(), bin_res(0x15, 6, 0, 0, 46, 3, 0) +
	                            "Non-numeric server-side value for incr or decr");
}

TEST_F(Bin, VersionStatNoopQuitAnswers)
{
	ASSERT_EQ(feed(bin_req(0x0b, "", "", "", 1)), 1);
	ASSERT_EQ(mc_bin_encode_version(&out, &r, "1.6.18"), 0);
	EXPECT_EQ(out.str(), bin_res(0x0b, 0, 0, 0, 6, 1, 0) + "1.6.18");
	mc_parser_consume(&p, &in, &r);

	Chain o2;
	ASSERT_EQ(feed(bin_req(0x10, "", "", "", 2)), 1);
	ASSERT_EQ(mc_bin_encode_stat(&o2, &r, "pid", 3, "42", 2), 0);
	ASSERT_EQ(mc_bin_encode_stat_end(&o2, &r), 0);
	EXPECT_EQ(o2.str(), bin_res(0x10, 0, 0, 3, 5, 2, 0) + "pid42" +
	                            bin_res(0x10, 0, 0, 0, 0, 2, 0));
	mc_parser_consume(&p, &in, &r);

	Chain o3;
	ASSERT_EQ(feed(bin_req(0x0a, "", "", "", 3)), 1);
	ASSERT_EQ(mc_encode_status(&o3, &r, MC_ST_OK, 0), 0);
	EXPECT_EQ(o3.str(), bin_res(0x0a, 0, 0, 0, 0, 3, 0));
	mc_parser_consume(&p, &in, &r);

	Chain o4;
	ASSERT_EQ(feed(bin_req(0x17, "", "", "", 4)), 1); // QUITQ: close, silent
	EXPECT_EQ(r.close, 1);
	ASSERT_EQ(mc_encode_status(&o4, &r, MC_ST_OK, 0), 0);
	EXPECT_EQ(o4.len(), 0u);
}

TEST(BinExptime, ThirtyDayRule)
{
	EXPECT_EQ(mc_exptime_abs(0, 1000000000), 0);
	EXPECT_EQ(mc_exptime_abs(10, 1000000000), 1000000010);
	EXPECT_EQ(mc_exptime_abs(2592000, 1000000000), 1000000000 + 2592000);
	EXPECT_EQ(mc_exptime_abs(2592001, 1000000000), 2592001);
	EXPECT_EQ(mc_exptime_abs(-1, 1000000000), 999999999);
}

} // namespace

namespace {

std::vector<std::string> peek_keys(bp_chain *in, unsigned max = 32)
{
	mc_key_view v[32];
	unsigned n = mc_bin_peek_get_keys(in, v, max);
	std::vector<std::string> out;
	for (unsigned i = 0; i < n; i++)
		out.emplace_back(v[i].key, v[i].len);
	return out;
}

// The prefetch hint: GET-family keys of the whole requests in the first
// block, other commands stepped over, at most max.
TEST(BinPeek, FindsTheGetKeysOfAPipeline)
{
	Chain in;
	add_block(&in, bin_req(0x00, "", "a1", "") + bin_req(0x01, std::string(8, '\0'), "s", "v") +
	                       bin_req(0x09, "", "b22", "") + bin_req(0x0c, "", "c", "") +
	                       bin_req(0x0d, "", "d4", "") + bin_req(0x0a, "", "", "") +
	                       bin_req(0x00, "", "e5", ""));
	EXPECT_EQ(peek_keys(&in), (std::vector<std::string>{"a1", "b22", "c", "d4", "e5"}));
	EXPECT_EQ(peek_keys(&in, 2), (std::vector<std::string>{"a1", "b22"}));
}

// Anything that is not a whole, well-formed binary request ends the scan:
// a partial request, bad magic, an unknown opcode, a shape the opcode
// does not allow, text. Nothing is read past the block.
TEST(BinPeek, StopsAtWhatIsNotAWholeRequest)
{
	std::string get = bin_req(0x00, "", "k", "");
	std::string bad_shape = bin_req(0x00, "xxxx", "k", "");  // GET with extras
	std::string unknown = bin_req(0xee, "", "k", "");
	std::string bad_magic = get;
	bad_magic[0] = 0x81;
	const std::string stops[] = {bad_shape, unknown, bad_magic, "get k\r\n"};
	for (size_t i = 0; i < 4; i++) {
		Chain in;
		add_block(&in, get + stops[i] + get);
		EXPECT_EQ(peek_keys(&in).size(), 1u) << "case " << i;
	}
	Chain partial;
	add_block(&partial, get + get.substr(0, 20));
	EXPECT_EQ(peek_keys(&partial).size(), 1u);
	Chain empty;
	EXPECT_TRUE(peek_keys(&empty).empty());
	// A body length beyond the block, however large, stops the scan.
	std::string huge = get;
	huge[8] = huge[9] = huge[10] = huge[11] = '\xff';
	Chain in;
	add_block(&in, huge);
	EXPECT_TRUE(peek_keys(&in).empty());
}

std::vector<std::string> peek_raw(const std::string &b, unsigned max = 32)
{
	mc_key_view v[32];
	unsigned n = mc_peek_get_keys(b.data(), b.size(), v, max);
	std::vector<std::string> out;
	for (unsigned i = 0; i < n; i++) {
		EXPECT_GE(v[i].key, b.data());
		EXPECT_LE(v[i].key + v[i].len, b.data() + b.size());
		out.emplace_back(v[i].key, v[i].len);
	}
	return out;
}

using Keys = std::vector<std::string>;

// The same hint from raw bytes (netpoll's on_peek): binary as above; a
// text retrieval line's keys, only when the line's end is in view.
TEST(Peek, RawBytesBinaryAndText)
{
	EXPECT_EQ(peek_raw(bin_req(0x0c, "", "k1", "") + bin_req(0x0d, "", "k2", "")),
	          (Keys{"k1", "k2"}));
	EXPECT_EQ(peek_raw("get a bb  ccc\r\n"), (Keys{"a", "bb", "ccc"}));
	EXPECT_EQ(peek_raw("get a bb ccc\r\n", 2), (Keys{"a", "bb"}));
	EXPECT_EQ(peek_raw("gets one\r\nget two\r\n"), (Keys{"one"}));
	EXPECT_EQ(peek_raw("mg foo v f t\r\n"), (Keys{"foo"}));
	EXPECT_EQ(peek_raw("get a\n"), (Keys{"a"}));
	// not a retrieval, no end of line, no key, a key over 250 bytes
	for (const std::string &b : {std::string("set a 0 0 1\r\nx\r\n"), std::string("get abc"),
	                             std::string("get \r\n"), std::string("mn\r\n"), std::string(""),
	                             "get " + std::string(251, 'k') + "\r\n",
	                             std::string("gat 10 k\r\n")})
		EXPECT_TRUE(peek_raw(b).empty()) << b;
	EXPECT_EQ(peek_raw("get " + std::string(251, 'k') + " ok\r\n"), (Keys{"ok"}));
}

} // namespace
