# make bench        install Lark and the peers, then measure Lark beside them (one table, one chart)
# make bench-quick  the same, short: a few rounds, fewer live jobs, a short iperf3
# Both need root (they install packages and create network namespaces); the chart and the raw
# samples go to bench/out/ (BENCH_OUT=DIR to change). Without make (a fresh Debian has none):
# bash contrib/lark-setup bench (or bench-quick) does the same.
BENCH_OUT ?= bench/out
export BENCH_OUT

.PHONY: bench bench-quick

bench:
	bash contrib/lark-setup bench

bench-quick:
	bash contrib/lark-setup bench-quick
