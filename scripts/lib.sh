# Shared shell helpers for scripts/demo and the benchmark scripts. Source it; do not run it.

S32S3_SERVER_FDS=()

# start_server KIND VAR: starts a local S3 server (scripts/s3server.py) and stores its one-line JSON
# description in $VAR and the file descriptor that keeps it alive in ${VAR}_FD. The server stays up while
# this shell holds that descriptor (the write end of its stdin FIFO): `stop_server VAR` closes it, and so
# does the calling script's exit, kill -9 included.
start_server() {
    local kind=$1 var=$2 dir pid fd
    dir=$(mktemp -d "${TMPDIR:-/tmp}/s32s3-$kind-ctl.XXXXXX")
    mkfifo "$dir/in"
    # The new server must not inherit the descriptors that keep the others alive, or stopping one of those
    # would wait for this one.
    (
        for other in "${S32S3_SERVER_FDS[@]}"; do eval "exec $other>&-"; done
        exec .venv/bin/python scripts/s3server.py "$kind" <"$dir/in" >"$dir/out"
    ) &
    pid=$!
    exec {fd}>"$dir/in"
    S32S3_SERVER_FDS+=("$fd")
    while [ ! -s "$dir/out" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "could not start the local $kind server (see the message above); run scripts/setup" >&2
            return 1
        fi
        sleep 0.2
    done
    printf -v "$var" '%s' "$(head -1 "$dir/out")"
    printf -v "${var}_FD" '%s' "$fd"
    printf -v "${var}_PID" '%s' "$pid"
    rm -rf "$dir"
}

# stop_server VAR: stops a server started by start_server and waits until its data is gone.
stop_server() {
    local fd_var="${1}_FD" pid_var="${1}_PID"
    eval "exec ${!fd_var}>&-"
    wait "${!pid_var}" 2>/dev/null || true
}

# json_field JSON NAME: one field of a server description.
json_field() {
    .venv/bin/python -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}
