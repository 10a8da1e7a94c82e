#!/usr/bin/env bash
# Fuzz the request parser, the PROXY header parser and the WebSocket frame reader for SECONDS in all (default 60: the
# bounded run .ci/run makes; a longer one: fuzz/run.sh 3600). New inputs that reach new code
# land in fuzz/corpus/*/grown: commit them, tests/unit/test_corpus.py replays them.
# Needs clang and atheris (pip install -e '.[dev]'; apt-get install clang).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
command -v clang >/dev/null || { echo "fuzz/run.sh needs clang: apt-get install clang" >&2; exit 1; }

# the parsers built for libFuzzer, apart from the normal in-place build
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cp setup.py "$build/"
tar -c --exclude='*.so' --exclude='*.c' --exclude=__pycache__ fastsock | tar -x -C "$build"
(cd "$build" && CC=clang LDSHARED="clang -shared" FASTSOCK_FUZZ=1 \
    python setup.py -q build_ext --inplace --force >/dev/null)
# libFuzzer as a shared library, preloaded so its symbols are global when the parsers load
# (atheris then uses it instead of the copy inside its own module)
libfuzzer=$(python -c 'import atheris; print(atheris.path())')/libclang_rt.fuzzer_no_main.a
clang++ -shared -o "$build/libfuzzer.so" -Wl,--whole-archive "$libfuzzer" \
    -Wl,--no-whole-archive -lpthread

mkdir -p fuzz/corpus/requests/grown fuzz/corpus/proxy/grown fuzz/corpus/websocket/grown
fuzz() {    # target, seconds, corpus dirs: new inputs go to a scratch dir, then those that add
            # coverage are merged into the target's grown/ (kept small enough to commit)
    local target=$1 seconds=$2 new="$build/new-$1"
    shift 2
    mkdir -p "$new"
    FUZZ_TARGET=$target LD_PRELOAD="$build/libfuzzer.so" PYTHONPATH="$build" \
        python fuzz/fuzz_parsers.py -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix=fuzz/ "$new" "$@" >"$build/$target.log" 2>&1 || {
        tail -40 "$build/$target.log" >&2
        echo "fuzzing $target found a failure: the input is fuzz/crash-* (or timeout-*)" >&2
        return 1
    }
    grep -E "^#[0-9]+ +DONE|new_units_added" "$build/$target.log" | sed "s/^/$target: /"
    FUZZ_TARGET=$target LD_PRELOAD="$build/libfuzzer.so" PYTHONPATH="$build" \
        python fuzz/fuzz_parsers.py -merge=1 "fuzz/corpus/$target/grown" "$new" >"$build/$target-merge.log" 2>&1
    echo "$target: $(ls "fuzz/corpus/$target/grown" | wc -l) inputs in fuzz/corpus/$target/grown"
}
fuzz requests $((seconds / 2)) fuzz/corpus/requests/grown fuzz/corpus/requests/valid \
    fuzz/corpus/requests/invalid
fuzz proxy $((seconds / 4)) fuzz/corpus/proxy/grown fuzz/corpus/proxy
fuzz websocket $((seconds / 4)) fuzz/corpus/websocket/grown fuzz/corpus/websocket
