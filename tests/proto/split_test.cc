// Every request split at every byte offset across blocks, delivered one
// byte per block, and pipelines of hundreds of mixed requests cut into
// random blocks: the parse must not depend on where the blocks end.
#include "util.h"

#include <random>

using namespace mctest;

namespace {

std::vector<std::string> binary_corpus()
{
	std::string e8 = be32(0x12345678) + be32(100);
	std::string e20 = be64(3) + be64(9) + be32(0xffffffff);
	return {
		bin_req(0x00, "", "key", "", 1),
		bin_req(0x09, "", "a-longer-key:1234", "", 2, 3),
		bin_req(0x0c, "", "k", ""),
		bin_req(0x0d, "", std::string(250, 'x'), ""),
		bin_req(0x01, e8, "key", "value bytes here", 4, 5),
		bin_req(0x11, e8, "k", std::string(300, 'v')),
		bin_req(0x02, e8, "k", ""),
		bin_req(0x13, e8, "kk", "r"),
		bin_req(0x04, "", "del", "", 0, 99),
		bin_req(0x05, e20, "ctr", ""),
		bin_req(0x16, e20, "ctr", ""),
		bin_req(0x07, "", "", ""),
		bin_req(0x08, be32(10), "", ""),
		bin_req(0x0a, "", "", "", 0xffffffff),
		bin_req(0x0b, "", "", ""),
		bin_req(0x0e, "", "app", "end"),
		bin_req(0x1a, "", "pre", "pend"),
		bin_req(0x10, "", "items", ""),
		bin_req(0x1b, be32(1), "", ""),
		bin_req(0x1c, be32(5), "touch", ""),
		bin_req(0x1e, be32(5), "gatq", ""),
		bin_req(0x24, be32(5), "gatkq", ""),
	};
}

std::vector<std::string> text_corpus()
{
	return {
		"get k\r\n",
		"get a bb ccc dddd eeeee\r\n",
		"gets " + std::string(250, 'g') + " x\r\n",
		"gat 10 a b\r\n",
		"gats 0 z\n",
		"set key 1 2 5\r\nhello\r\n",
		"add k 0 0 0 noreply\r\n\r\n",
		"replace k 4294967295 -1 3\r\nabc\r\n",
		"append k 0 0 2\r\n\r\n\r\n",
		"prepend k 0 0 1\r\nx\r\n",
		"cas k 0 0 1 123456789012345\r\nx\r\n",
		"delete k\r\n",
		"delete k 0 noreply\r\n",
		"incr k 18446744073709551615\r\n",
		"decr k 1 noreply\r\n",
		"touch k 100\r\n",
		"flush_all\r\n",
		"flush_all 5 noreply\r\n",
		"stats\r\n",
		"stats slabs\r\n",
		"version\r\n",
		"verbosity 2\r\n",
		"quit\r\n",
		"mg key v f t c k s Oab q\r\n",
		"mg Zm9vYmFy b k v\r\n",
		"ms key 5 T60 F7 MS I c k\r\nhello\r\n",
		"ms k 0\r\n\r\n",
		"md key q C5 Oo\r\n",
		"ma key MD D10 J20 N30 v t\r\n",
		"mn\r\n",
		"me key\r\n",
	};
}

std::string parse_alone(const std::string &wire)
{
	mc_parser p;
	mc_parser_init(&p, nullptr);
	Chain c;
	add_block(&c, wire);
	mc_request r;
	int rc = mc_parse(&p, &c, &r);
	EXPECT_EQ(rc, 1) << wire;
	EXPECT_EQ(r.total, wire.size()) << wire;
	return describe(r, &p, &c);
}

void check_all_splits(const std::string &wire)
{
	std::string want = parse_alone(wire);
	for (size_t i = 1; i < wire.size(); i++) {
		mc_parser p;
		mc_parser_init(&p, nullptr);
		Chain c;
		add_split(&c, wire, {i});
		mc_request r;
		ASSERT_EQ(mc_parse(&p, &c, &r), 1) << "split at " << i;
		ASSERT_EQ(describe(r, &p, &c), want) << "split at " << i;
	}
	// three pieces around the middle, every pair for short requests
	if (wire.size() <= 64) {
		for (size_t i = 1; i < wire.size(); i++)
			for (size_t j = i + 1; j < wire.size(); j++) {
				mc_parser p;
				mc_parser_init(&p, nullptr);
				Chain c;
				add_split(&c, wire, {i, j});
				mc_request r;
				ASSERT_EQ(mc_parse(&p, &c, &r), 1);
				ASSERT_EQ(describe(r, &p, &c), want)
					<< "split at " << i << "," << j;
			}
	}
}

void check_trickle(const std::string &wire)
{
	std::string want = parse_alone(wire);
	mc_parser p;
	mc_parser_init(&p, nullptr);
	Chain c;
	mc_request r;
	for (size_t i = 0; i < wire.size(); i++) {
		add_block(&c, wire.substr(i, 1));
		int rc = mc_parse(&p, &c, &r);
		if (i + 1 < wire.size()) {
			ASSERT_EQ(rc, -EAGAIN) << "after byte " << i;
			ASSERT_GT(p.need, c.len());
		} else {
			ASSERT_EQ(rc, 1);
		}
	}
	ASSERT_EQ(describe(r, &p, &c), want);
	mc_parser_consume(&p, &c, &r);
	EXPECT_EQ(c.len(), 0u);
}

TEST(Split, BinaryEveryOffset)
{
	for (auto &w : binary_corpus())
		check_all_splits(w);
}

TEST(Split, TextAndMetaEveryOffset)
{
	for (auto &w : text_corpus()) {
		SCOPED_TRACE(w);
		check_all_splits(w);
	}
}

TEST(Split, OneBytePerBlock)
{
	for (auto &w : binary_corpus())
		check_trickle(w);
	for (auto &w : text_corpus()) {
		SCOPED_TRACE(w);
		check_trickle(w);
	}
}

// Error answers do not depend on block boundaries either.
TEST(Split, ErrorsEveryOffset)
{
	std::vector<std::string> errs = {
		bin_req(0x00, be32(1), "k", ""),
		bin_req(0x40, be32(1), "k", "junk"),
		"bogus command\r\n",
		"set k x 0 1\r\n",
		"set k 0 0 1\r\nxy\r\n",
		"incr k nope\r\n",
		"mg k v v\r\n",
		"ms k 2 MZ\r\nab\r\n",
		"mg " + std::string(251, 'k') + "\r\n",
	};
	for (auto &w : errs) {
		std::string want;
		{
			mc_parser p;
			mc_parser_init(&p, nullptr);
			Chain c, o;
			add_block(&c, w);
			mc_request r;
			ASSERT_LT(mc_parse(&p, &c, &r), 0);
			mc_encode_error(&o, &r);
			want = describe(r, &p, &c) + "|" + o.str();
		}
		for (size_t i = 1; i < w.size(); i++) {
			mc_parser p;
			mc_parser_init(&p, nullptr);
			Chain c, o;
			add_split(&c, w, {i});
			mc_request r;
			ASSERT_LT(mc_parse(&p, &c, &r), 0);
			mc_encode_error(&o, &r);
			ASSERT_EQ(describe(r, &p, &c) + "|" + o.str(), want) << i;
		}
	}
}

// Hundreds of mixed requests in one stream, cut into random blocks and fed
// block by block; each parse must equal the request parsed alone.
void pipeline(const std::vector<std::string> &corpus, unsigned seed)
{
	std::mt19937 rng(seed);
	std::vector<std::string> wires;
	std::vector<std::string> want;
	std::string stream;
	for (int i = 0; i < 600; i++) {
		const std::string &w = corpus[rng() % corpus.size()];
		if (w == "quit\r\n" || (w.size() >= 2 && w[0] == (char)0x80 &&
		                        (w[1] == 0x07 || w[1] == 0x17)))
			continue; // would close
		wires.push_back(w);
		want.push_back(parse_alone(w));
		stream += w;
	}
	mc_parser p;
	mc_parser_init(&p, nullptr);
	Chain c;
	size_t pos = 0, got = 0;
	while (pos < stream.size()) {
		size_t n = 1 + rng() % 200;
		if (n > stream.size() - pos)
			n = stream.size() - pos;
		add_block(&c, stream.substr(pos, n));
		pos += n;
		for (;;) {
			mc_request r;
			int rc = mc_parse(&p, &c, &r);
			if (rc == -EAGAIN)
				break;
			ASSERT_EQ(rc, 1) << "request " << got;
			ASSERT_LT(got, want.size());
			ASSERT_EQ(describe(r, &p, &c), want[got]) << "request " << got;
			mc_parser_consume(&p, &c, &r);
			got++;
		}
	}
	EXPECT_EQ(got, want.size());
	EXPECT_EQ(c.len(), 0u);
}

TEST(Pipeline, BinaryMixed)
{
	for (unsigned s = 1; s <= 3; s++)
		pipeline(binary_corpus(), s);
}

TEST(Pipeline, TextAndMetaMixed)
{
	for (unsigned s = 1; s <= 3; s++)
		pipeline(text_corpus(), s);
}

} // namespace

// A server parses a burst with a shared parser and, when the burst ends
// mid-request, moves the state into a parser of the connection's own; the
// shared one then parses another connection's bytes. The pending request
// must not depend on the shared parser (geecached stored client 1's value
// under client 2's key: its key pointed into the shared scratch).
TEST(Split, PendingRequestSurvivesAMoveAndReuseOfTheOldParser)
{
	const std::string b64a = "a2V5LW9mLWNsaWVudC1vbmU="; // key-of-client-one
	const std::vector<std::pair<std::string, std::string>> cases = {
		{"ms " + b64a + " 10 b\r\n0123456789\r\n", "key-of-client-one"},
		{"set " + std::string(40, 'A') + " 0 0 10\r\n0123456789\r\n",
		 std::string(40, 'A')},
	};
	for (const auto &[wire, key] : cases) {
		for (size_t cut : {size_t(5), size_t(20), wire.size() - 8}) {
			SCOPED_TRACE(wire + " cut " + std::to_string(cut));
			mc_parser shared, own;
			mc_parser_init(&shared, nullptr);
			Chain in1, in2;
			// The key itself straddles blocks when cut is inside it.
			add_split(&in1, wire.substr(0, wire.find("\r\n") + 5), {cut});
			mc_request req;
			ASSERT_EQ(mc_parse(&shared, &in1, &req), -EAGAIN);
			own = shared;
			// Another connection's request through the shared parser
			// overwrites its scratch (a base64 key is decoded there).
			mc_parser_init(&shared, nullptr);
			add_block(&in2, "mg " + std::string("b3RoZXIta2V5LWItYmJiYmJiYmJiYmJi") +
			                        " b v\r\n");
			ASSERT_EQ(mc_parse(&shared, &in2, &req), 1);
			ASSERT_EQ(std::string(req.key, req.key_len), "other-key-b-bbbbbbbbbbbb");
			mc_parser_consume(&shared, &in2, &req);
			memset(&shared, 0x5a, sizeof(shared)); // and is gone
			add_block(&in1, wire.substr(wire.find("\r\n") + 5));
			ASSERT_EQ(mc_parse(&own, &in1, &req), 1);
			EXPECT_EQ(std::string(req.key, req.key_len), key);
			EXPECT_EQ(value_str(req, &in1), "0123456789");
			mc_parser_consume(&own, &in1, &req);
			EXPECT_EQ(in1.len(), 0u);
		}
	}
}
