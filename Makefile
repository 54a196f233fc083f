# The README's commands. Each target only calls CMake presets, so CI and a
# person run exactly the same thing.
#   make demo      install what is missing, build, run the examples tour
#   make test      install what is missing, build, run every test (ctest), then
#                  the core tests cross-built for aarch64 under qemu-user
#   make sanitize  the whole suite under ASan+UBSan and under TSan, then the fuzzers briefly
#   make bench     release benchmarks, keel beside its peers; JSON in build/bench/results
#   make bench-record  keep that JSON in benchmarks/records/ and regenerate the docs' tables
#   make install PREFIX=dir

PREFIX ?= /usr/local
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 20
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(JOBS)
export CTEST_PARALLEL_LEVEL ?= $(JOBS)

.PHONY: all deps demo test aarch64 sanitize asan tsan fuzz bench bench-record install format tidy clean

all: test

deps:
	@bash cmake/install-deps.sh

demo: deps
	cmake --preset release
	cmake --build --preset release
	./build/release/examples/keel-tour

test: deps
	cmake --workflow --preset dev
	cmake --workflow --preset aarch64

aarch64: deps
	cmake --workflow --preset aarch64

asan: deps
	cmake --workflow --preset asan

tsan: deps
	cmake --workflow --preset tsan

fuzz: deps
	cmake --preset fuzz
	cmake --build --preset fuzz
	bash cmake/run-fuzzers.sh build/fuzz/fuzz $(FUZZ_SECONDS)

sanitize: asan tsan fuzz

bench: deps
	cmake --preset bench
	cmake --build --preset bench
	bash cmake/run-benchmarks.sh build/bench/benchmarks build/bench/results

bench-record:
	python3 benchmarks/tables.py record build/bench/results
	python3 benchmarks/tables.py update

install: deps
	cmake --preset release
	cmake --build --preset release
	cmake --install build/release --prefix "$(PREFIX)"

format:
	git ls-files '*.hpp' '*.cpp' | xargs clang-format -i

tidy:
	cmake --preset dev
	git ls-files 'tests/*.cpp' 'examples/*.cpp' | xargs clang-tidy -p build/dev --quiet

clean:
	rm -rf build
