# Shared shell helpers for scripts/demo and the benchmark scripts. Source it; do not run it.

# start_server KIND VAR: starts a local S3 server (scripts/s3server.py) and stores its one-line JSON
# description in $VAR. The server stays up while this shell holds the write end of its stdin FIFO, so it
# stops when the calling script exits in any way, kill -9 included.
start_server() {
    local kind=$1 var=$2 dir pid fd
    dir=$(mktemp -d "${TMPDIR:-/tmp}/s32s3-$kind-ctl.XXXXXX")
    mkfifo "$dir/in"
    .venv/bin/python scripts/s3server.py "$kind" <"$dir/in" >"$dir/out" &
    pid=$!
    exec {fd}>"$dir/in"
    while [ ! -s "$dir/out" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "could not start the local $kind server (see the message above); run scripts/setup" >&2
            return 1
        fi
        sleep 0.2
    done
    printf -v "$var" '%s' "$(head -1 "$dir/out")"
    rm -rf "$dir"
}

# json_field JSON NAME: one field of a server description.
json_field() {
    .venv/bin/python -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}
