# make bench        install Lark and the peers, then measure Lark beside them (one table, one chart)
# make bench-quick  the same, short: a few rounds, fewer live jobs, a short iperf3
# Both need root (they install packages and create network namespaces); the chart and the raw
# samples go to bench/out/ (BENCH_OUT=DIR to change).
BENCH_OUT ?= bench/out

.PHONY: bench bench-quick bench-setup

bench: bench-setup
	.venv/bin/python bench/report.py --out $(BENCH_OUT)

bench-quick: bench-setup
	.venv/bin/python bench/report.py --quick --out $(BENCH_OUT)

bench-setup:
	bash contrib/lark-setup bench
