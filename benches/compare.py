#!/usr/bin/env python3
"""s32s3 against rclone, on the same local SeaweedFS, in one run.

    .venv/bin/python benches/compare.py [--small N] [--large N] [--large-mib M] [--rss-objects N] [--transfers T]
                                        [--binary S32S3] [--baseline S32S3]

For each data set — (a) many small objects, (b) a few large ones — it times, on one SeaweedFS server:
  raw     `rclone copy` of the same files from a local directory into a plain bucket (no encryption): the
          physical upload limit of this machine and server;
  s32s3   `s32s3 backup` of the source bucket into a backup bucket;
  rclone  `rclone sync` of the source bucket into a crypt remote (same passwords, same transfers);
and (c) a second run of both with nothing changed, then the way back:
  s32s3 restore   `s32s3 restore` of that backup into a new bucket;
  rclone restore  `rclone copy` out of rclone's crypt remote into a new bucket;
both against the same raw upload. In data set (a), --shards N (default 2) more processes back it up as one
sharded run (`--shard I/N --run-id …`, all at once, into their own warmed bucket): wall from the first start to
the last exit, CPU summed, RSS the largest, against the one-process backup. Optionally a backup of --rss-objects small objects shows how peak memory
grows with the object count.

With --baseline BINARY, another s32s3 (say a build of main) also backs up each data set into its own warmed
backup bucket, and backs it up again with nothing changed, in the same run against the same server; extra
ratio lines compare the two (new = --binary). So that neither is favoured by going first, the order
alternates: in data sets (a) and (many) the baseline backs up first, in (b) the new binary; the reruns go in
the reverse order of the backups. The table lists the runs in the order they ran. Whichever backs up (b)'s
large objects first can still pay a one-time kernel cost for fresh huge pages (about 0.3 s of system time on
this 2-core VM), which no order inside one data set removes: run the same binary on both sides to see it.

Each row: wall time, client CPU time (user+sys, children included) and peak RSS of the client process. Then
the ratios the project tracks. Every target bucket is warmed up first (a new SeaweedFS bucket uploads
several times slower until its volumes have grown), so the comparison is not skewed by who goes first.

Needs scripts/setup (SeaweedFS and boto3 in .venv, rclone) and a release build:
`cargo build --release -p s32s3-cli`.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD, PASSWORD2 = "benchmark password", "benchmark salt"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def measure_together(cmds, env):
    """Runs cmds at once; returns the wall seconds from the first start to the last exit, their CPU seconds
    summed, the largest peak RSS (MiB) and each one's stdout."""
    files = [(tempfile.TemporaryFile(), tempfile.TemporaryFile()) for _ in cmds]
    start = time.monotonic()
    procs = {subprocess.Popen(cmd, env=env, stdout=out, stderr=err).pid: (cmd, out, err)
             for cmd, (out, err) in zip(cmds, files)}
    cpu, rss, outs = 0.0, 0.0, []
    while procs:
        pid, status, usage = os.wait4(-1, 0)
        if pid not in procs:
            continue
        cmd, out, err = procs.pop(pid)
        cpu += usage.ru_utime + usage.ru_stime
        rss = max(rss, usage.ru_maxrss / 1024)
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            log(f"FAILED: {' '.join(cmd)}\n{err.read().decode(errors='replace')[-3000:]}")
            sys.exit(1)
        outs.append(out.read())
    return {"wall": time.monotonic() - start, "cpu": cpu, "rss": rss, "stdout": outs}


def measure(cmd, env=None):
    """Runs cmd; returns wall seconds, user+sys CPU seconds and peak RSS (MiB) of the process tree."""
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr)
        # wait4 gives the rusage of exactly this child (and its reaped descendants).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read(), stderr.read()
    if proc.returncode != 0:
        log(f"FAILED ({proc.returncode}): {' '.join(cmd)}\n{err.decode(errors='replace')[-3000:]}")
        sys.exit(1)
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024, "stdout": out}


class Server:
    def __init__(self):
        self.proc = subprocess.Popen(
            [os.path.join(ROOT, ".venv/bin/python"), os.path.join(ROOT, "scripts/s3server.py"), "seaweedfs"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if not line:
            sys.exit("could not start SeaweedFS: run scripts/setup")
        self.info = json.loads(line)

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait()


def write_dataset(directory, count, size):
    """count files of size bytes; each file's bytes differ (a rotation of one random MiB)."""
    chunk = os.urandom(1 << 20)
    for i in range(count):
        offset = (i * 7919) % len(chunk)
        rotated = chunk[offset:] + chunk[:offset]
        with open(_path(directory, i, count), "wb") as f:
            remaining = size
            while remaining > 0:
                n = min(remaining, len(rotated))
                f.write(rotated[:n])
                remaining -= n


def _path(directory, i, count):
    sub = os.path.join(directory, f"d{i // 1000:03d}") if count > 1000 else directory
    os.makedirs(sub, exist_ok=True)
    return os.path.join(sub, f"obj-{i:06d}.bin")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000, help="objects of 4 KiB in data set (a)")
    parser.add_argument("--large", type=int, default=8, help="large objects in data set (b)")
    parser.add_argument("--large-mib", type=int, default=128, help="size of each large object")
    parser.add_argument("--rss-objects", type=int, default=0, help="also back up this many 4 KiB objects")
    parser.add_argument("--transfers", type=int, default=16, help="parallel transfers, both tools")
    parser.add_argument("--shards", type=int, default=2, help="shards of the sharded backup of data set (a) (0: none)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/s32s3"), help="the s32s3 to time")
    parser.add_argument("--baseline", help="another s32s3 to time against --binary (backup and rerun)")
    args = parser.parse_args()

    binary = args.binary
    if not os.path.exists(binary):
        sys.exit("build first: cargo build --release -p s32s3-cli")
    if args.baseline and not os.path.exists(args.baseline):
        sys.exit(f"no such baseline binary: {args.baseline}")
    rclone = shutil.which("rclone") or sys.exit("rclone is not installed: run scripts/setup")
    env = dict(os.environ)
    env.pop("AWS_CA_BUNDLE", None)  # rclone 1.60 refuses S3 remotes when it is set

    import boto3
    from botocore.config import Config

    server = Server()
    work = tempfile.mkdtemp(prefix="s32s3-bench-")
    results = {}
    try:
        info = server.info
        s3 = boto3.client("s3", endpoint_url=info["endpoint"], aws_access_key_id=info["access_key"],
                          aws_secret_access_key=info["secret_key"], region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"},
                                        request_checksum_calculation="when_required"))
        obscure = lambda p: subprocess.check_output([rclone, "obscure", p], text=True).strip()
        conf = os.path.join(work, "rclone.conf")
        with open(conf, "w") as f:
            f.write(f"[sw]\ntype = s3\nprovider = Other\nendpoint = {info['endpoint']}\n"
                    f"access_key_id = {info['access_key']}\nsecret_access_key = {info['secret_key']}\n"
                    "region = us-east-1\nforce_path_style = true\n\n")
            for name in ("small", "large", "many"):
                f.write(f"[crypt-{name}]\ntype = crypt\nremote = sw:rclone-{name}\n"
                        f"password = {obscure(PASSWORD)}\npassword2 = {obscure(PASSWORD2)}\n\n")
        env["RCLONE_CONFIG"] = conf
        rclone_flags = ["--transfers", str(args.transfers), "--checkers", str(args.transfers)]
        s32s3_env = dict(env, S32S3_SOURCE_ENDPOINT=info["endpoint"], S32S3_SOURCE_ACCESS_KEY_ID=info["access_key"],
                         S32S3_SOURCE_SECRET_ACCESS_KEY=info["secret_key"],
                         S32S3_DESTINATION_ENDPOINT=info["endpoint"],
                         S32S3_DESTINATION_ACCESS_KEY_ID=info["access_key"],
                         S32S3_DESTINATION_SECRET_ACCESS_KEY=info["secret_key"],
                         S32S3_CRYPT_PASSWORD=PASSWORD, S32S3_CRYPT_PASSWORD2=PASSWORD2,
                         S32S3_TRANSFERS=str(args.transfers), S32S3_LOG_LEVEL="warn")

        warm_dir = os.path.join(work, "warmup")
        write_dataset(os.path.join(warm_dir, "big"), 48, 4 << 20)
        write_dataset(os.path.join(warm_dir, "small"), 1500, 4096)

        def warm(bucket):
            s3.create_bucket(Bucket=bucket)
            subprocess.run([rclone, "copy", warm_dir, f"sw:{bucket}/warmup", *rclone_flags], env=env, check=True)
            subprocess.run([rclone, "purge", f"sw:{bucket}/warmup"], env=env, check=True)

        sets = [("small", args.small, 4096), ("large", args.large, args.large_mib << 20)]
        if args.rss_objects:
            sets.append(("many", args.rss_objects, 4096))
        for index, (name, count, size) in enumerate(sets):
            local = os.path.join(work, name)
            log(f"== data set {name}: {count} objects of {size} bytes")
            write_dataset(local, count, size)
            src, raw = f"src-{name}", f"raw-{name}"
            targets = (f"restored-s32s3-{name}", f"restored-rclone-{name}") if name != "many" else ()
            baseline = (f"baseline-{name}",) if args.baseline else ()
            sharded = (f"sharded-{name}",) if name == "small" and args.shards > 0 else ()
            for bucket in (src, raw, f"s32s3-{name}", f"rclone-{name}", *targets, *baseline, *sharded):
                warm(bucket)
            # The source is filled by the same upload the raw figure times.
            r = {}
            if name != "many":
                r["raw"] = measure([rclone, "copy", local, f"sw:{raw}", *rclone_flags], env)
            subprocess.run([rclone, "copy", local, f"sw:{src}", *rclone_flags], env=env, check=True)
            backup = [binary, "backup", "--json", "--bucket", src]
            run_env = dict(s32s3_env, S32S3_BACKUP_BUCKET=f"s32s3-{name}")
            # (row, command, environment) of each s32s3 backup; with a baseline, who goes first alternates.
            backups = [("s32s3", backup, run_env)]
            if args.baseline:
                backups.append(("baseline", [args.baseline, *backup[1:]],
                                dict(s32s3_env, S32S3_BACKUP_BUCKET=f"baseline-{name}")))
                if index % 2 == 0:
                    backups.reverse()
            for run, cmd, cmd_env in backups:
                r[run] = measure(cmd, cmd_env)
            if sharded:
                n = args.shards
                shards = [[*backup, "--shard", f"{i}/{n}", "--run-id", f"bench-{name}"] for i in range(n)]
                m = measure_together(shards, dict(s32s3_env, S32S3_BACKUP_BUCKET=sharded[0]))
                merged = [json.loads(o) for o in m.pop("stdout") if json.loads(o).get("manifest")]
                assert len(merged) == 1 and merged[0]["objects"] == count, merged
                r[f"{n} shards"] = m
            if name != "many":
                sync = [rclone, "sync", f"sw:{src}", f"crypt-{name}:", *rclone_flags]
                r["rclone"] = measure(sync, env)
                for run, cmd, cmd_env in reversed(backups):
                    r[f"{run} rerun"] = measure(cmd, cmd_env)
                r["rclone rerun"] = measure(sync, env)
                restore = [binary, "restore", "--json", "--bucket", f"{src}:restored-s32s3-{name}"]
                r["s32s3 restore"] = measure(restore, run_env)
                restored = json.loads(r["s32s3 restore"]["stdout"])
                assert restored["restored"]["objects"] + restored["skipped"]["objects"] == count, restored
                r["rclone restore"] = measure([rclone, "copy", f"crypt-{name}:", f"sw:restored-rclone-{name}",
                                               *rclone_flags], env)
            for run, _, _ in backups:
                summary = json.loads(r[run]["stdout"])
                assert summary["objects"] == count, (run, summary)
            results[name] = r
            shutil.rmtree(local)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{'case':<8} {'run':<13} {'wall s':>8} {'cpu s':>8} {'RSS MiB':>8}")
    for name, r in results.items():
        for run, m in r.items():
            print(f"{name:<8} {run:<13} {m['wall']:8.2f} {m['cpu']:8.2f} {m['rss']:8.1f}")
    print("\nratios (higher wall ratio = s32s3 faster; lower CPU/RSS ratio = s32s3 cheaper)")
    for name in ("small", "large"):
        r = results.get(name)
        if not r:
            continue
        s, c, raw = r["s32s3"], r["rclone"], r["raw"]
        print(f"  ({name}) wall: rclone/s32s3 = {c['wall'] / s['wall']:.2f}x, raw/s32s3 = {raw['wall'] / s['wall']:.2f}; "
              f"CPU s32s3/rclone = {s['cpu'] / c['cpu']:.2f}; RSS s32s3/rclone = {s['rss'] / c['rss']:.2f}")
        sr, cr = r["s32s3 rerun"], r["rclone rerun"]
        print(f"  ({name}, nothing changed) wall: rclone/s32s3 = {cr['wall'] / sr['wall']:.2f}x; "
              f"CPU s32s3/rclone = {sr['cpu'] / cr['cpu']:.2f}; RSS s32s3/rclone = {sr['rss'] / cr['rss']:.2f}")
        sharded = next((k for k in r if k.endswith(" shards")), None)
        if sharded:
            sh = r[sharded]
            print(f"  ({name}, {sharded} vs one process) wall: one/sharded = {s['wall'] / sh['wall']:.2f}x; "
                  f"CPU sharded/one = {sh['cpu'] / s['cpu']:.2f}; peak RSS per process sharded/one = {sh['rss'] / s['rss']:.2f}")
        sr, cr = r["s32s3 restore"], r["rclone restore"]
        print(f"  ({name}, restore) wall: rclone/s32s3 = {cr['wall'] / sr['wall']:.2f}x, raw/s32s3 = {raw['wall'] / sr['wall']:.2f}; "
              f"CPU s32s3/rclone = {sr['cpu'] / cr['cpu']:.2f}; RSS s32s3/rclone = {sr['rss'] / cr['rss']:.2f}")
    if "many" in results:
        ratio = results["many"]["s32s3"]["rss"] / results["small"]["s32s3"]["rss"]
        print(f"  peak RSS, {args.rss_objects} vs {args.small} objects: {ratio:.2f}x")
    if args.baseline:
        print(f"\nnew/baseline (lower = the new binary faster/cheaper; new = {binary}, baseline = {args.baseline})")
        for name, r in results.items():
            for label, run in ((name, ""), (f"{name}, nothing changed", " rerun")):
                if f"baseline{run}" in r:
                    n, b = r[f"s32s3{run}"], r[f"baseline{run}"]
                    print(f"  ({label}) new/baseline: wall {n['wall'] / b['wall']:.2f}, CPU {n['cpu'] / b['cpu']:.2f}, "
                          f"RSS {n['rss'] / b['rss']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({n: {k: {x: v[x] for x in ("wall", "cpu", "rss")} for k, v in r.items()}
                       for n, r in results.items()}, f, indent=2)


if __name__ == "__main__":
    main()
