# bench/lib.sh — helpers the bench scripts share; sourced, not run.

# A loopback TCP port the kernel reports free now.
free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# utime + stime of PID in clock ticks (fields 14 and 15 of /proc/PID/stat;
# the command name in field 2 may hold spaces, so count after its ')').
cpu_ticks() {
	local s
	s=$(<"/proc/$1/stat")
	s=${s##*) }
	local -a f
	read -r -a f <<<"$s"
	echo $((f[11] + f[12]))
}

# Resident set size of PID in KiB.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
