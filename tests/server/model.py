"""A model-checked interleaving driver for memcached servers.

Many connections to one server, each sending random requests in the
binary, text or meta protocol (stores of every mode, gets, gat, touch,
delete, incr/decr, quiet and noreply variants, plain and base64 keys,
values of 0 B to 300 KiB). Every request is cut at random points and its
pieces are interleaved with the other connections' pieces; every reply is
checked against a model of the store.

Units. A connection sends a *unit*: one to three requests (plus a no-op
that marks the end of the unit's replies when any of them is quiet), cut
into pieces. A unit runs when its last piece arrives and the driver reads
its replies before it sends anything else, so within one driver the server
executes units in the driver's order, whatever loop serves which
connection: the model is exact for every key the driver alone touches.

Key states. A key the model follows exactly is KNOWN (value, flags, cas
when a reply told it) or ABSENT. A key is UNKNOWN when the model cannot
know it: written by other drivers (shared keys, several processes), stored
in a store that evicts, or after an out-of-memory answer or a closed
connection (fault injection). An UNKNOWN key is checked to be "never
wrong": a value returned for it must be one a client really wrote under
that key (values describe themselves: segments `key#writer#len:` followed
by a pattern of the writer; appends and prepends concatenate segments), so
a value under the wrong key or a torn value fails; a hit makes an
exactly-followed key KNOWN again.

Deterministic from a seed (printed on failure); a run is reproduced with
`model.py <server> --seed S --config NAME`.

Usage: model.py <geecached> [--minutes N] [--seed S] [--config NAME]
       [--memcached]   (the model against memcached 1.6.18 itself)
"""
import base64
import os
import random
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcutil as g  # noqa: E402

ABSENT = "absent"
DEBUG = bool(os.environ.get("MODEL_DEBUG"))
UNKNOWN = "unknown"
EXP = 100000        # every TTL the driver sends: nothing expires in a run
# Deltas stay far below 2^63: memcached 1.6.18 now and then answered
# "non-numeric" to an incr of a value above 2^63 (not repeatable with the
# same seed); wrap-around is tested in tests/cache.
BIN_ENOMEM = 0x82


class Mismatch(AssertionError):
    pass


class Closed(Exception):
    """The server closed a connection (allowed only under fault injection)."""


# ---- values ---------------------------------------------------------------

def pattern(wid, n):
    base = b"%08x" % ((wid * 2654435761) & 0xffffffff)
    return (base * (n // 8 + 1))[:n]


def segment(key, wid, n):
    return b"%s#%d#%d:" % (key, wid, n) + pattern(wid, n)


def value_ok(key, val):
    """True when val is made of whole segments written under key (or is
    empty, or a counter's number)."""
    if is_counter(key):
        return val.strip().isdigit()
    i = 0
    while i < len(val):
        h = val.find(b":", i)
        if h < 0:
            return False
        parts = val[i:h].split(b"#")
        if len(parts) != 3 or parts[0] != key:
            return False
        try:
            wid, n = int(parts[1]), int(parts[2])
        except ValueError:
            return False
        if val[h + 1:h + 1 + n] != pattern(wid, n):
            return False
        i = h + 1 + n
    return True


def value_size(rng, big):
    r = rng.random()
    if r < 0.05:
        return 0
    if r < 0.45:
        return rng.randrange(1, 100)
    if r < 0.75:
        return rng.randrange(100, 2000)
    if r < 0.93 or not big:
        return rng.randrange(2000, 20000)
    if r < 0.985:
        return rng.randrange(20000, 100000)
    return rng.randrange(100000, 300 * 1024)


# ---- connections ----------------------------------------------------------

class Conn:
    def __init__(self, port, proto, idx, timeout):
        self.port, self.proto, self.idx, self.timeout = port, proto, idx, timeout
        self.unit = None
        self.open()

    def open(self):
        self.s = g.connect(self.port)
        self.s.settimeout(self.timeout)
        self.buf = bytearray()

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def send(self, b):
        try:
            self.s.sendall(b)
        except OSError as e:
            raise Closed(str(e))

    def _more(self):
        try:
            b = self.s.recv(1 << 20)
        except socket.timeout:
            raise Mismatch("conn %d: no reply within %.0f s (have %r)"
                           % (self.idx, self.timeout, bytes(self.buf[:200])))
        except OSError as e:
            raise Closed(str(e))
        if not b:
            raise Closed("EOF")
        self.buf += b

    def exact(self, n):
        while len(self.buf) < n:
            self._more()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + 2]
                if DEBUG:
                    sys.stderr.write("  conn %d line %r\n" % (self.idx, out[:100]))
                return out
            self._more()

    def bin(self):
        h = self.exact(24)
        magic, op, kl, el, _, st, bl, opq, cas = g.HDR.unpack(h)
        if magic != 0x81:
            raise Mismatch("conn %d: bad response magic %#x" % (self.idx, magic))
        body = self.exact(bl)
        if DEBUG:
            sys.stderr.write("  conn %d bin op %#x st %#x opq %d cas %d body %r\n"
                             % (self.idx, op, st, opq, cas, body[:60]))
        return {"op": op, "status": st, "opaque": opq, "cas": cas,
                "extras": body[:el], "key": body[el:el + kl], "value": body[el + kl:]}

    def idle(self):
        """Nothing unread and nothing more arriving right now. A server
        that closed the connection after its replies (under faults: no
        memory for the next read) raises Closed: an end of file is not
        more bytes (CI saw it taken for them once, seed 598447100)."""
        if self.buf:
            return False
        r, _, _ = select.select([self.s], [], [], 0)
        if not r:
            return True
        try:
            b = self.s.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError as e:
            raise Closed(str(e))
        if not b:
            raise Closed("EOF after the replies")
        self.buf += b
        return False


# ---- the driver -----------------------------------------------------------

class Driver:
    def __init__(self, port, seed, nconns=12, nkeys=8, did=0, shared=6,
                 evicting=False, faults=False, protos=("bin", "text"),
                 timeout=30.0):
        self.port, self.seed, self.did = port, seed, did
        self.rng = random.Random(seed)
        self.evicting, self.faults = evicting, faults
        self.timeout = timeout
        self.wid = did * 10**9
        self.opaque = 1
        self.model = {}
        self.conns = [Conn(port, protos[i % len(protos)], i, timeout)
                      for i in range(nconns)]
        # Each connection owns keys no other touches (the server keeps one
        # connection's order, so the model is exact for them); the shared
        # ones are written by every connection (and driver).
        for c in self.conns:
            c.keys = []
            for i in range(nkeys):
                pad = b"_" + b"x" * self.rng.choice((0, 20, 120, 230)) if i % 3 == 0 else b""
                c.keys.append((b"o%dx%d_k%d" % (did, c.idx, i) + pad)[:250])
            c.ckeys = [b"o%dx%d_c%d" % (did, c.idx, i) for i in range(2)]
        self.skeys = [b"s_k%d" % i for i in range(shared)]
        self.sckeys = [b"s_c%d" % i for i in range(max(1, shared // 3))]
        self.keys = self.skeys + self.sckeys + [k for c in self.conns for k in c.keys + c.ckeys]
        for k in self.keys:
            self.model[k] = UNKNOWN if self.weak(k) else ABSENT
        self.cur = None
        self.units = 0
        self.checks = 0
        self.closes = 0
        self.unverified = 0
        self.enomem = 0
        self.log = []

    # -- model helpers
    def weak(self, k):
        return self.evicting or k.startswith(b"s_")

    def state(self, k):
        return self.model[k]

    def forget(self, k):
        self.model[k] = UNKNOWN

    def learn(self, k, val, flags, cas):
        if not self.weak(k):
            self.model[k] = {"v": val, "f": flags, "cas": cas}

    def fail(self, conn, op, msg):
        hist = [h for h in self.log if op.get("key") is not None and h[1] == op.get("key")]
        raise Mismatch("seed %d driver %d unit %d conn %d (%s) op %s: %s\n"
                       "  history of the key (unit, key, op, state after):\n%s"
                       % (self.seed, self.did, self.units, conn.idx, conn.proto,
                          op["desc"], msg,
                          "\n".join("    %d %r %s -> %s" % h for h in hist[-12:])))

    def record(self, op):
        k = op.get("key")
        if k is not None:
            st = self.state(k)
            if isinstance(st, dict):
                st = "%dB %r.. f%d cas %s" % (len(st["v"]), st["v"][:24], st["f"], st["cas"])
            self.log.append((self.units, k, op["desc"], st))
            if len(self.log) > 4000:
                del self.log[:2000]

    def check_hit(self, conn, op, k, val, flags, cas):
        """A value the server returned for k."""
        self.checks += 1
        st = self.state(k)
        if isinstance(st, dict):
            if val != st["v"] and not (is_counter(k) and num(val) == num(st["v"])):
                self.fail(conn, op, "value of %r: got %d bytes %r..., model %d bytes %r..."
                          % (k[:40], len(val), val[:60], len(st["v"]), st["v"][:60]))
            if flags is not None and flags != st["f"]:
                self.fail(conn, op, "flags of %r: got %d, model %d" % (k[:40], flags, st["f"]))
            if cas is not None and st["cas"] is not None and cas != st["cas"]:
                self.fail(conn, op, "cas of %r: got %d, model %d" % (k[:40], cas, st["cas"]))
            if cas is not None:
                st["cas"] = cas
            return
        if st == ABSENT:
            self.fail(conn, op, "hit on %r, which the model says is absent (%d bytes %r...)"
                      % (k[:40], len(val), val[:60]))
        if not value_ok(k, val):
            self.fail(conn, op, "value under %r was never written under that key "
                      "(wrong key or torn): %d bytes %r..." % (k[:40], len(val), val[:80]))
        self.learn(k, val, flags if flags is not None else 0, cas)

    def check_miss(self, conn, op, k):
        self.checks += 1
        st = self.state(k)
        if isinstance(st, dict):
            self.fail(conn, op, "miss on %r, model holds %d bytes" % (k[:40], len(st["v"])))
        if not self.weak(k):
            self.model[k] = ABSENT

    # -- generation
    def next_wid(self):
        self.wid += 1
        return self.wid

    def next_opaque(self):
        self.opaque = (self.opaque + 1) & 0x7fffffff or 1
        return self.opaque

    def pick_key(self, counter=False):
        """A key of the connection being generated for, or a shared one."""
        c = self.cur
        if self.rng.random() < 0.25:
            return self.rng.choice(self.sckeys if counter else self.skeys)
        return self.rng.choice(c.ckeys if counter else c.keys)

    def gen_unit(self, conn):
        n = self.rng.choice((1, 1, 1, 2, 3))
        ops = [self.gen_op(conn) for _ in range(n)]
        quiet = any(o.get("quiet") for o in ops)
        wire = b"".join(o["wire"] for o in ops)
        if conn.proto == "bin":
            sync = self.next_opaque()
            wire += g.bin_req(0x0a, opaque=sync)
        elif quiet:
            sync = True
            wire += b"mn\r\n"
        else:
            sync = None
        cuts = sorted(self.rng.sample(range(1, len(wire)), min(len(wire) - 1,
                      self.rng.choice((0, 1, 1, 2, 3, 5)))))
        pieces, prev = [], 0
        for c in cuts + [len(wire)]:
            pieces.append(wire[prev:c])
            prev = c
        return {"ops": ops, "pieces": pieces, "sync": sync}

    def gen_op(self, conn):
        self.cur = conn
        r = self.rng.random()
        if conn.proto == "bin":
            return self.gen_bin(r)
        if r < 0.5:
            return self.gen_text(r * 2)
        return self.gen_meta((r - 0.5) * 2)

    def can_quiet_text(self, k):
        # A text reply that may be absent is matched to its request by the
        # model: only for keys the model knows, and never under faults.
        return not self.weak(k) and not self.faults

    def new_value(self, k, big=True):
        """A value for k; appends and prepends add at most ~3 KiB."""
        n = value_size(self.rng, big)
        if not big:
            n = min(n, 3000)
        return segment(k, self.next_wid(), n) if n else b""

    # binary ---------------------------------------------------------------
    def gen_bin(self, r):
        rng = self.rng
        quiet = rng.random() < 0.3
        opq = self.next_opaque()
        if r < 0.35:
            k = self.pick_key()
            mode = rng.choice(("set", "set", "add", "replace", "append", "prepend", "cas"))
            v = self.new_value(k, big=mode not in ("append", "prepend"))
            flags = rng.getrandbits(32)
            cas = self.cas_for(k) if mode == "cas" else 0
            code = {"set": 0x01, "add": 0x02, "replace": 0x03, "append": 0x0e,
                    "prepend": 0x0f, "cas": 0x01}[mode]
            if quiet:
                code = {0x01: 0x11, 0x02: 0x12, 0x03: 0x13, 0x0e: 0x19, 0x0f: 0x1a}[code]
            ext = b"" if mode in ("append", "prepend") else struct.pack(">II", flags, rng.choice((0, EXP)))
            wire = g.bin_req(code, k, ext, v, opq, cas)
            return {"kind": "store", "mode": mode, "key": k, "v": v, "f": flags,
                    "cas": cas, "quiet": quiet, "opaque": opq, "wire": wire,
                    "desc": "bin %s%s %r %dB" % (mode, "q" if quiet else "", k[:30], len(v))}
        if r < 0.7:
            k = self.pick_key(counter=rng.random() < 0.15)
            gat = rng.random() < 0.25
            withkey = rng.random() < 0.5
            if gat:
                code = (0x23 if withkey else 0x1d) if not quiet else (0x24 if withkey else 0x1e)
                wire = g.bin_req(code, k, struct.pack(">I", EXP), b"", opq)
            else:
                code = (0x0c if withkey else 0x00) if not quiet else (0x0d if withkey else 0x09)
                wire = g.bin_req(code, k, b"", b"", opq)
            return {"kind": "get", "key": k, "quiet": quiet, "opaque": opq,
                    "withkey": withkey, "wire": wire,
                    "desc": "bin %s%s%s %r" % ("gat" if gat else "get", "k" if withkey else "",
                                               "q" if quiet else "", k[:30])}
        if r < 0.78:
            k = self.pick_key(counter=rng.random() < 0.3)
            wire = g.bin_req(0x1c, k, struct.pack(">I", EXP), b"", opq)
            return {"kind": "touch", "key": k, "opaque": opq, "wire": wire,
                    "desc": "bin touch %r" % k[:30]}
        if r < 0.86:
            k = self.pick_key(counter=rng.random() < 0.3)
            wire = g.bin_req(0x14 if quiet else 0x04, k, b"", b"", opq)
            return {"kind": "delete", "key": k, "quiet": quiet, "opaque": opq, "wire": wire,
                    "desc": "bin delete%s %r" % ("q" if quiet else "", k[:30])}
        k = self.pick_key(counter=True)
        decr = rng.random() < 0.3
        delta = rng.choice((1, 7, 1000, 2**40))
        init = rng.randrange(0, 10**6)
        create = rng.random() < 0.6
        ext = struct.pack(">QQI", delta, init, EXP if create else 0xffffffff)
        code = (0x06 if decr else 0x05) + (0x10 if quiet else 0)
        wire = g.bin_req(code, k, ext, b"", opq)
        return {"kind": "arith", "key": k, "decr": decr, "delta": delta, "init": init if create else None,
                "quiet": quiet, "opaque": opq, "wire": wire,
                "desc": "bin %s%s %r %d" % ("decr" if decr else "incr", "q" if quiet else "", k, delta)}

    def cas_for(self, k):
        """The cas the model knows for k (half the time), else one that
        cannot match."""
        st = self.state(k)
        if isinstance(st, dict) and st["cas"] and self.rng.random() < 0.6:
            return st["cas"]
        return (1 << 62) + self.rng.getrandbits(40)

    # text -----------------------------------------------------------------
    def gen_text(self, r):
        rng = self.rng
        if r < 0.35:
            k = self.pick_key()
            mode = rng.choice(("set", "set", "add", "replace", "append", "prepend", "cas"))
            v = self.new_value(k, big=mode not in ("append", "prepend"))
            flags = rng.getrandbits(32)
            noreply = self.can_quiet_text(k) and rng.random() < 0.25
            cas = self.cas_for(k) if mode == "cas" else 0
            line = b"%s %s %d %d %d" % (mode.encode(), k, flags, rng.choice((0, EXP)), len(v))
            if mode == "cas":
                line += b" %d" % cas
            if noreply:
                line += b" noreply"
            return {"kind": "store", "mode": mode, "key": k, "v": v, "f": flags, "cas": cas,
                    "noreply": noreply, "quiet": noreply, "wire": line + b"\r\n" + v + b"\r\n",
                    "desc": "text %s %r %dB%s" % (mode, k[:30], len(v), " noreply" if noreply else "")}
        if r < 0.65:
            ks = [self.pick_key(counter=rng.random() < 0.15) for _ in range(rng.choice((1, 1, 2, 4)))]
            gat = rng.random() < 0.25
            ret_cas = rng.random() < 0.5
            cmd = (b"gat" if gat else b"get") + (b"s" if ret_cas else b"")
            wire = cmd + (b" %d" % EXP if gat else b"") + b" " + b" ".join(ks) + b"\r\n"
            return {"kind": "tget", "keys": ks, "wire": wire,
                    "desc": "text %s %r" % (cmd.decode(), [k[:20] for k in ks])}
        if r < 0.75:
            k = self.pick_key(counter=rng.random() < 0.3)
            noreply = self.can_quiet_text(k) and rng.random() < 0.25
            wire = b"touch %s %d%s\r\n" % (k, EXP, b" noreply" if noreply else b"")
            return {"kind": "touch", "key": k, "noreply": noreply, "quiet": noreply, "wire": wire,
                    "desc": "text touch %r" % k[:30]}
        if r < 0.85:
            k = self.pick_key(counter=rng.random() < 0.3)
            noreply = self.can_quiet_text(k) and rng.random() < 0.25
            wire = b"delete %s%s\r\n" % (k, b" noreply" if noreply else b"")
            return {"kind": "delete", "key": k, "noreply": noreply, "quiet": noreply, "wire": wire,
                    "desc": "text delete %r" % k[:30]}
        k = self.pick_key(counter=True)
        if rng.random() < 0.25:
            n = rng.randrange(0, 10**12)
            v = b"%d" % n
            return {"kind": "store", "mode": "set", "key": k, "v": v, "f": 0, "cas": 0,
                    "noreply": False, "wire": b"set %s 0 0 %d\r\n%s\r\n" % (k, len(v), v),
                    "desc": "text set counter %r %d" % (k, n)}
        decr = rng.random() < 0.3
        delta = rng.choice((1, 7, 1000, 2**40))
        noreply = self.can_quiet_text(k) and rng.random() < 0.25
        wire = b"%s %s %d%s\r\n" % (b"decr" if decr else b"incr", k, delta,
                                   b" noreply" if noreply else b"")
        return {"kind": "arith", "key": k, "decr": decr, "delta": delta, "init": None,
                "noreply": noreply, "quiet": noreply, "wire": wire,
                "desc": "text %s %r %d" % ("decr" if decr else "incr", k, delta)}

    # meta -----------------------------------------------------------------
    def meta_key(self, k):
        # memcached's 250-byte limit applies to the encoded key
        if self.rng.random() < 0.4 and len(k) <= 186:
            return base64.b64encode(k), True
        return k, False

    def gen_meta(self, r):
        rng = self.rng
        if r < 0.35:
            k = self.pick_key()
            mode = rng.choice(("S", "S", "E", "R", "A", "P", "C"))
            v = self.new_value(k, big=mode not in ("A", "P"))
            flags = rng.getrandbits(32)
            wk, b64 = self.meta_key(k)
            quiet = self.can_quiet_text(k) and rng.random() < 0.25
            toks = [b"ms", wk, b"%d" % len(v), b"F%d" % flags, b"T%d" % rng.choice((0, EXP)), b"c"]
            cas = 0
            if mode == "C":
                cas = self.cas_for(k)
                toks.append(b"C%d" % cas)
            elif mode != "S" or rng.random() < 0.5:
                toks.append(b"M" + mode.encode())
            if b64:
                toks.append(b"b")
            if quiet:
                toks.append(b"q")
            toks = toks[:3] + shuffled(rng, toks[3:])
            m = {"S": "set", "E": "add", "R": "replace", "A": "append", "P": "prepend",
                 "C": "cas"}[mode]
            return {"kind": "store", "meta": True, "mode": m, "key": k, "v": v, "f": flags,
                    "cas": cas, "quiet": quiet, "wire": b" ".join(toks) + b"\r\n" + v + b"\r\n",
                    "desc": "ms %s %r%s %dB" % (m, k[:30], " b64" if b64 else "", len(v))}
        if r < 0.7:
            k = self.pick_key(counter=rng.random() < 0.15)
            wk, b64 = self.meta_key(k)
            quiet = self.can_quiet_text(k) and rng.random() < 0.25
            toks = [b"mg", wk, b"v", b"f", b"c", b"k", b"s"]
            touch = rng.random() < 0.2
            if touch:
                toks.append(b"T%d" % EXP)
            if b64:
                toks.append(b"b")
            if quiet:
                toks.append(b"q")
            toks = toks[:2] + shuffled(rng, toks[2:])
            return {"kind": "mg", "key": k, "b64": b64, "quiet": quiet,
                    "wire": b" ".join(toks) + b"\r\n",
                    "desc": "mg %r%s%s" % (k[:30], " b64" if b64 else "", " T" if touch else "")}
        if r < 0.85:
            k = self.pick_key(counter=rng.random() < 0.3)
            wk, b64 = self.meta_key(k)
            quiet = self.can_quiet_text(k) and rng.random() < 0.25
            toks = [b"md", wk] + ([b"b"] if b64 else []) + ([b"q"] if quiet else [])
            return {"kind": "delete", "meta": True, "key": k, "quiet": quiet,
                    "wire": b" ".join(toks) + b"\r\n", "desc": "md %r" % k[:30]}
        k = self.pick_key(counter=True)
        wk, b64 = self.meta_key(k)
        decr = rng.random() < 0.3
        delta = rng.choice((1, 7, 1000))
        create = rng.random() < 0.5
        init = rng.randrange(0, 10**6)
        toks = [b"ma", wk, b"v", b"D%d" % delta]
        if decr:
            toks.append(rng.choice((b"MD", b"M-")))
        if create:
            toks += [b"N%d" % EXP, b"J%d" % init]
        if b64:
            toks.append(b"b")
        return {"kind": "arith", "meta": True, "key": k, "decr": decr, "delta": delta,
                "init": init if create else None, "wire": b" ".join(toks) + b"\r\n",
                "desc": "ma %r %s%d%s" % (k, "-" if decr else "+", delta, " N" if create else "")}

    # -- execution
    def step(self):
        conn = self.rng.choice(self.conns)
        if conn.unit is None:
            conn.unit = self.gen_unit(conn)
        u = conn.unit
        try:
            conn.send(u["pieces"].pop(0))
            if u["pieces"]:
                return
            conn.unit = None
            self.finish(conn, u)
        except Closed as e:
            if not self.faults:
                raise Mismatch("seed %d driver %d: the server closed conn %d (%s)"
                               % (self.seed, self.did, conn.idx, e))
            self.closes += 1
            self.lost(conn, u)
        self.units += 1

    def lost(self, conn, u):
        """A connection closed: whatever its unit did is unknown."""
        for op in u["ops"]:
            for k in op.get("keys", [op.get("key")]):
                self.forget(k)
        conn.close()
        conn.unit = None
        conn.open()

    def finish(self, conn, u):
        ops = u["ops"]
        if DEBUG:
            sys.stderr.write("unit %d conn %d: %s\n" % (self.units, conn.idx,
                             " | ".join(o["desc"] for o in ops)))
        if conn.proto == "bin":
            byop = {}
            while True:
                r = conn.bin()
                if r["opaque"] == u["sync"] and r["op"] == 0x0a:
                    break
                byop[r["opaque"]] = r
            for op in ops:
                self.bin_result(conn, op, byop.pop(op["opaque"], None))
                self.record(op)
            if byop:
                raise Mismatch("seed %d: replies to nothing: %r" % (self.seed, byop))
            return
        for op in ops:
            self.text_result(conn, op)
            self.record(op)
        if u["sync"]:
            line = conn.line()
            if line != b"MN":
                self.fail(conn, ops[-1], "expected MN after the unit, got %r" % line[:80])
        if not conn.idle():
            self.fail(conn, ops[-1], "more bytes than the replies: %r" % bytes(conn.buf[:80]))

    # -- expected outcomes
    def store_outcome(self, op):
        """('stored'|'not_stored'|'exists'|'not_found', new value) from the
        model, or None when it cannot know."""
        k, mode = op["key"], op["mode"]
        st = self.state(k)
        if st == UNKNOWN:
            return None
        have = isinstance(st, dict)
        cas = op.get("cas", 0)
        if mode == "cas" or (mode == "set" and cas):
            if not have:
                return ("not_found", None)
            return ("stored", op["v"]) if st["cas"] == cas else ("exists", None)
        if mode == "set":
            return ("stored", op["v"])
        if mode == "add":
            return ("exists", None) if have else ("stored", op["v"])
        if mode == "replace":
            return ("stored", op["v"]) if have else ("not_found", None)
        if not have:
            return ("not_stored", None)
        return ("stored", st["v"] + op["v"] if mode == "append" else op["v"] + st["v"])

    def apply_store(self, op, outcome, cas):
        k = op["key"]
        st = self.state(k)
        if outcome == "stored":
            if op["mode"] in ("append", "prepend"):
                if isinstance(st, dict):
                    self.model[k] = {"v": self.store_outcome(op)[1], "f": st["f"], "cas": cas}
                else:
                    self.forget(k)
            else:
                self.learn(k, op["v"], op["f"], cas)
        elif outcome in ("not_found", "not_stored") and not self.weak(k):
            if op["mode"] in ("replace", "append", "prepend", "cas") or op.get("cas"):
                self.model[k] = ABSENT
        elif outcome == "enomem":
            self.forget(k)

    def arith_outcome(self, op):
        st = self.state(op["key"])
        if st == UNKNOWN:
            return None
        if not isinstance(st, dict):
            return ("created", op["init"]) if op["init"] is not None else ("not_found", None)
        cur = num(st["v"])
        if cur is None:
            return ("badval", None)
        if op["decr"]:
            return ("ok", max(0, cur - op["delta"]))
        return ("ok", (cur + op["delta"]) % 2**64)

    def apply_arith(self, op, value, cas):
        k = op["key"]
        st = self.state(k)
        if value is None:
            if not self.weak(k) and st != UNKNOWN and not isinstance(st, dict):
                self.model[k] = ABSENT
            return
        if self.weak(k):
            return
        flags = st["f"] if isinstance(st, dict) else 0
        self.model[k] = {"v": b"%d" % value, "f": flags, "cas": cas}

    # binary results
    def bin_result(self, conn, op, r):
        kind, k = op["kind"], op.get("key")
        st = r["status"] if r else 0
        if r and st == BIN_ENOMEM and self.faults:
            self.enomem += 1
            self.forget(k)
            return
        if r is None and not op.get("quiet"):
            self.fail(conn, op, "no reply")
        if kind == "store":
            names = {0: "stored", 1: "not_found", 2: "exists", 5: "not_stored"}
            if st not in names:
                self.fail(conn, op, "status %#x" % st)
            got = names[st]
            exp = self.store_outcome(op)
            if exp is not None and exp[0] != got:
                self.fail(conn, op, "status %s, model %s" % (got, exp[0]))
            if r is None and got != "stored":
                self.fail(conn, op, "quiet store answered nothing but model says %s" % got)
            self.apply_store(op, got, r["cas"] if r and got == "stored" else None)
        elif kind == "get":
            if r is None or st == 1:
                self.check_miss(conn, op, k)
                return
            if st != 0:
                self.fail(conn, op, "status %#x" % st)
            if op["withkey"] and r["key"] != k:
                self.fail(conn, op, "GETK answered key %r for %r" % (r["key"][:40], k[:40]))
            flags = struct.unpack(">I", r["extras"])[0] if len(r["extras"]) == 4 else None
            self.check_hit(conn, op, k, r["value"], flags, r["cas"])
        elif kind == "touch":
            if st == 1:
                self.check_miss(conn, op, k)
            elif st == 0:
                self.checks += 1
                if self.state(k) == ABSENT:
                    self.fail(conn, op, "touched an absent key")
            else:
                self.fail(conn, op, "status %#x" % st)
        elif kind == "delete":
            if st == 1:
                self.check_miss(conn, op, k)
            elif st == 0:
                self.checks += 1
                if self.state(k) == ABSENT:
                    self.fail(conn, op, "deleted an absent key")
                if not self.weak(k):
                    self.model[k] = ABSENT
            else:
                self.fail(conn, op, "status %#x" % st)
        else:
            exp = self.arith_outcome(op)
            if st == 0:
                if r is None:  # quiet: it succeeded, the value unseen
                    if exp is None:
                        return self.forget(k)
                    if exp[0] in ("not_found", "badval"):
                        self.fail(conn, op, "quiet arith answered nothing, model %r" % (exp,))
                    val = exp[1]
                else:
                    val = struct.unpack(">Q", r["value"])[0]
                    if exp is not None and (exp[0] not in ("ok", "created") or exp[1] != val):
                        self.fail(conn, op, "value %d, model %r" % (val, exp))
                self.checks += 1
                self.apply_arith(op, val, r["cas"] if r else None)
            elif st == 1:
                if exp is not None and exp[0] != "not_found":
                    self.fail(conn, op, "not found, model %r" % (exp,))
                self.apply_arith(op, None, None)
            elif st == 6:
                if exp is not None and exp[0] != "badval":
                    self.fail(conn, op, "non-numeric, model %r" % (exp,))
            else:
                self.fail(conn, op, "status %#x" % st)

    # text and meta results
    def text_result(self, conn, op):
        kind, k = op["kind"], op.get("key")
        if op.get("noreply"):
            # The model says what happened (keys it knows; no faults).
            if kind == "store":
                exp = self.store_outcome(op)
                self.apply_store(op, exp[0], None)
            elif kind == "touch":
                pass
            elif kind == "delete":
                self.model[k] = ABSENT
            elif kind == "arith":
                exp = self.arith_outcome(op)
                self.apply_arith(op, exp[1] if exp[0] == "ok" else None, None)
            return
        if kind == "tget":
            return self.tget_result(conn, op)
        if op.get("quiet"):
            # meta q: the model knows whether a reply comes.
            if kind == "store" and self.store_outcome(op)[0] == "stored":
                return self.apply_store(op, "stored", None)
            if kind == "mg" and not isinstance(self.state(k), dict):
                return self.check_miss(conn, op, k)
            if kind == "delete" and isinstance(self.state(k), dict):
                self.model[k] = ABSENT
                return
        line = conn.line()
        if line.startswith(b"SERVER_ERROR") and self.faults:
            self.enomem += 1
            self.forget(k)
            return
        if kind == "store":
            names = {b"STORED": "stored", b"NOT_STORED": "not_stored", b"EXISTS": "exists",
                     b"NOT_FOUND": "not_found", b"HD": "stored", b"NS": "not_stored",
                     b"EX": "exists", b"NF": "not_found"}
            tok = line.split(b" ")
            got = names.get(tok[0])
            if got is None:
                self.fail(conn, op, "reply %r" % line[:80])
            exp = self.store_outcome(op)
            if exp is not None:
                want = exp[0]
                # text and meta: add's "exists" and replace's "not found"
                # are NOT_STORED (NS)
                if op["mode"] in ("add", "replace") and want in ("exists", "not_found"):
                    want = "not_stored"
                if want != got:
                    self.fail(conn, op, "reply %r, model %s" % (line[:80], exp[0]))
            cas = None
            for t in tok[1:]:
                if t.startswith(b"c"):
                    cas = int(t[1:])
            self.apply_store(op, got, cas if got == "stored" else None)
        elif kind == "mg":
            self.mg_result(conn, op, line)
        elif kind == "touch":
            if line == b"TOUCHED":
                self.checks += 1
                if self.state(k) == ABSENT:
                    self.fail(conn, op, "touched an absent key")
            elif line == b"NOT_FOUND":
                self.check_miss(conn, op, k)
            else:
                self.fail(conn, op, "reply %r" % line[:80])
        elif kind == "delete":
            if line in (b"DELETED", b"HD"):
                self.checks += 1
                if self.state(k) == ABSENT:
                    self.fail(conn, op, "deleted an absent key")
                if not self.weak(k):
                    self.model[k] = ABSENT
            elif line in (b"NOT_FOUND", b"NF"):
                self.check_miss(conn, op, k)
            else:
                self.fail(conn, op, "reply %r" % line[:80])
        else:
            self.arith_result(conn, op, line)

    def arith_result(self, conn, op, line):
        exp = self.arith_outcome(op)
        val = None
        if op.get("meta") and line.startswith(b"VA "):
            val = int(conn.line())
        elif line.isdigit():
            val = int(line)
        elif line in (b"NOT_FOUND", b"NF"):
            if exp is not None and exp[0] != "not_found":
                self.fail(conn, op, "not found, model %r" % (exp,))
            return self.apply_arith(op, None, None)
        elif line.startswith(b"CLIENT_ERROR cannot increment"):
            if exp is not None and exp[0] != "badval":
                self.fail(conn, op, "non-numeric, model %r" % (exp,))
            return
        else:
            self.fail(conn, op, "reply %r" % line[:80])
        if exp is not None and (exp[0] not in ("ok", "created") or exp[1] != val):
            self.fail(conn, op, "value %d, model %r" % (val, exp))
        self.checks += 1
        self.apply_arith(op, val, None)

    def mg_result(self, conn, op, line):
        k = op["key"]
        if line.startswith(b"EN"):
            return self.check_miss(conn, op, k)
        tok = line.split(b" ")
        if tok[0] != b"VA":
            self.fail(conn, op, "reply %r" % line[:80])
        n = int(tok[1])
        data = conn.exact(n + 2)
        if data[-2:] != b"\r\n":
            self.fail(conn, op, "value not followed by CRLF")
        flags = cas = None
        for t in tok[2:]:
            if t[:1] == b"f":
                flags = int(t[1:])
            elif t[:1] == b"c":
                cas = int(t[1:])
            elif t[:1] == b"s" and int(t[1:]) != n:
                self.fail(conn, op, "s%d for a %d-byte value" % (int(t[1:]), n))
            elif t[:1] == b"k":
                # memcached 1.6.18 encodes k's key when the item was
                # stored with a base64 key, and with b only when b came
                # before k in the request
                rk = t[1:]
                if rk != k:
                    try:
                        rk = base64.b64decode(rk, validate=True)
                    except ValueError:
                        pass
                if rk != k:
                    self.fail(conn, op, "answered key %r for %r" % (rk[:40], k[:40]))
        self.check_hit(conn, op, k, data[:-2], flags, cas)

    def tget_result(self, conn, op):
        keys = op["keys"]
        hits = []
        while True:
            line = conn.line()
            if line == b"END":
                break
            if line.startswith(b"SERVER_ERROR") and self.faults:
                self.enomem += 1
                for k in keys:
                    self.forget(k)
                return
            tok = line.split(b" ")
            if tok[0] != b"VALUE" or len(tok) < 4:
                self.fail(conn, op, "reply %r" % line[:80])
            n = int(tok[3])
            data = conn.exact(n + 2)
            hits.append((tok[1], int(tok[2]), data[:-2], int(tok[4]) if len(tok) > 4 else None))
        # Hits come in request order; a key without a hit is a miss.
        i = 0
        for k in keys:
            if i < len(hits) and hits[i][0] == k:
                self.check_hit(conn, op, k, hits[i][2], hits[i][1], hits[i][3])
                i += 1
            else:
                self.check_miss(conn, op, k)
        if i != len(hits):
            self.fail(conn, op, "VALUE lines for keys not asked or out of order: %r"
                      % [h[0][:30] for h in hits[i:]])

    # -- the whole run
    def run(self, units=None, deadline=None):
        while True:
            if units is not None and self.units >= units:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            self.step()
        # Finish every unit still in flight.
        for c in self.conns:
            while c.unit is not None:
                u = c.unit
                try:
                    c.send(u["pieces"].pop(0))
                    if not u["pieces"]:
                        c.unit = None
                        self.finish(c, u)
                except Closed as e:
                    if not self.faults:
                        raise Mismatch("seed %d: the server closed conn %d (%s)"
                                       % (self.seed, c.idx, e))
                    self.lost(c, u)
        self.verify_all()

    def verify_all(self):
        """Every key the model knows, read back on a fresh connection: no
        acknowledged write lost. Under fault injection a read may be refused
        (out of memory, or the connection closed): it is tried again."""
        c = Conn(self.port, "bin", -1, self.timeout)
        try:
            for k in self.keys:
                op = {"desc": "final getk %r" % k[:30], "key": k}
                r = None
                for attempt in range(100 if self.faults else 1):
                    try:
                        opq = self.next_opaque()
                        c.send(g.bin_req(0x0c, k, b"", b"", opq))
                        r = c.bin()
                    except Closed:
                        if not self.faults:
                            raise
                        c.close()
                        c.open()
                        continue
                    if not (self.faults and r["status"] == BIN_ENOMEM):
                        break
                if r is None:
                    self.unverified += 1  # refused 100 times (faults)
                elif r["status"] == 0:
                    if r["key"] != k:
                        self.fail(c, op, "GETK answered key %r" % r["key"][:40])
                    self.check_hit(c, op, k, r["value"], struct.unpack(">I", r["extras"])[0],
                                   r["cas"])
                elif r["status"] == 1:
                    self.check_miss(c, op, k)
                else:
                    self.fail(c, op, "status %#x" % r["status"])
        finally:
            c.close()
        for cn in self.conns:
            cn.close()


def is_counter(k):
    """Counter keys (o<driver>_c<n>, s_c<n>) hold only numbers."""
    return k.split(b"_", 1)[1][:1] == b"c"


def shuffled(rng, xs):
    xs = list(xs)
    rng.shuffle(xs)
    return xs


def num(v):
    v = v.strip()
    return int(v) if v.isdigit() else None


# ---- configurations --------------------------------------------------------

# name: (server args, driver processes, driver options)
CONFIGS = {
    "one-loop": (["-t", "1", "-m", "256"], 1, {}),
    "four-loops": (["-t", "4", "-m", "256"], 1, {}),
    "parallel": (["-t", "2", "-m", "256"], 3, {}),
    # 16 segments of 1 MiB: a store that evicts all the time, yet holds
    # the open segments of every shard, queue and TTL class in use
    "evicting": (["-t", "2", "-m", "16", "-I", "512k"], 2, {"evicting": True, "nkeys": 150}),
}


def run_config(binary, name, seed, units=None, seconds=None, backend=None,
               memcached=False, env=None, faults=False):
    """Runs one configuration against a fresh server; returns a summary.
    Raises Mismatch (with the seed) on any wrong answer."""
    args, ndrivers, opts = CONFIGS[name]
    opts = dict(opts, faults=faults)
    if memcached:
        srv = MemcachedServer(args)
    else:
        if backend:
            args = args + ["--backend", backend]
        g.GEECACHED = binary
        srv = g.Server(*args, env=env)
    try:
        if ndrivers == 1:
            d = Driver(srv.port, seed, **opts)
            d.run(units=units, deadline=time.monotonic() + seconds if seconds else None)
            summary = {"units": d.units, "checks": d.checks, "closes": d.closes,
                       "enomem": d.enomem, "unverified": d.unverified}
        else:
            summary = run_parallel(srv.port, seed, ndrivers, opts, units, seconds)
        st = stats_retry(srv, faults)
        if not opts.get("evicting") and not faults and int(st.get("evictions", 0)):
            raise Mismatch("seed %d: %s evicted %s items; the exact model needs none"
                           % (seed, name, st["evictions"]))
        summary["evictions"] = int(st.get("evictions", 0))
        if opts.get("evicting") and not faults and units and units >= 3000 \
                and not summary["evictions"]:
            raise Mismatch("seed %d: %s evicted nothing: the mode tests nothing"
                           % (seed, name))
        srv.stop()
        return summary
    except BaseException:
        if memcached:
            srv.stop()
        elif not srv.stopped:
            sys.stderr.write(srv.stderr()[-4000:])
            srv.kill()
        raise


def stats_retry(srv, faults):
    """The server's stats; under fault injection the connection may be
    closed (no memory for the request or the reply): tried again."""
    for attempt in range(200 if faults else 1):
        try:
            return srv.stats()
        except (EOFError, OSError):
            if not faults:
                raise
    raise Mismatch("stats refused 200 times")


def _child(port, seed, did, opts, units, seconds, wfd):
    try:
        d = Driver(port, seed, did=did, **opts)
        d.run(units=units, deadline=time.monotonic() + seconds if seconds else None)
        msg = "ok %d %d %d %d %d" % (d.units, d.checks, d.closes, d.enomem, d.unverified)
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        msg = "fail " + str(e)
    os.write(wfd, msg.encode()[:60000])
    os.close(wfd)
    os._exit(0)


def run_parallel(port, seed, n, opts, units, seconds):
    """n driver processes at once (real parallelism against several loops);
    shared keys are checked "never wrong", each driver's own keys exactly."""
    kids = []
    for i in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _child(port, seed * 100 + i, i, opts, units, seconds, w)
        os.close(w)
        kids.append((pid, r))
    total = {"units": 0, "checks": 0, "closes": 0, "enomem": 0, "unverified": 0}
    fails = []
    for pid, r in kids:
        out = b""
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            out += b
        os.close(r)
        os.waitpid(pid, 0)
        msg = out.decode(errors="replace")
        if not msg.startswith("ok "):
            fails.append(msg or "driver died")
            continue
        for name, v in zip(("units", "checks", "closes", "enomem", "unverified"),
                           map(int, msg.split()[1:])):
            total[name] += v
    if fails:
        raise Mismatch("; ".join(fails))
    return total


class MemcachedServer:
    """memcached 1.6.18 with the same arguments, for checking the model."""

    def __init__(self, args):
        import subprocess
        path = g.need_tool("memcached")
        self.port = g.free_port()
        self.proc = subprocess.Popen([path, "-U", "0", "-l", "127.0.0.1", "-p", str(self.port)]
                                     + [a for a in args] + (["-u", "root"] if os.geteuid() == 0 else []),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        g._procs.append(self.proc)
        g.wait_port(self.port, proc=self.proc)

    def stats(self):
        return g.text_stats(self.port)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("server")
    ap.add_argument("--minutes", type=float, default=0)
    ap.add_argument("--units", type=int, default=3000)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--config", choices=sorted(CONFIGS))
    ap.add_argument("--backend")
    ap.add_argument("--memcached", action="store_true")
    ap.add_argument("--faults", help="GEECACHE_FAULT_ALLOC for the server")
    a = ap.parse_args()
    env = {"GEECACHE_FAULT_ALLOC": a.faults} if a.faults else None
    configs = [a.config] if a.config else sorted(CONFIGS)
    backends = [a.backend] if a.backend else ["epoll", "io_uring"]
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    deadline = time.monotonic() + a.minutes * 60
    runs = 0
    total = {"units": 0, "checks": 0}
    while True:
        for name in configs:
            for be in ([None] if a.memcached else backends):
                t0 = time.monotonic()
                s = run_config(os.path.abspath(a.server), name, seed, units=a.units,
                               backend=be, memcached=a.memcached, env=env,
                               faults=bool(a.faults))
                runs += 1
                total["units"] += s["units"]
                total["checks"] += s["checks"]
                print("seed %d %-10s %-8s units %6d checks %7d evictions %6d closes %d "
                      "enomem %d  %.1f s" % (seed, name, be or "memcached", s["units"],
                                              s["checks"], s["evictions"], s["closes"],
                                              s["enomem"], time.monotonic() - t0), flush=True)
                seed += 1
        if time.monotonic() >= deadline:
            break
    print("%d runs, %d units, %d checks, 0 mismatches" % (runs, total["units"], total["checks"]))


if __name__ == "__main__":
    main()
