#!/usr/bin/env python3
"""Two s32s3 binaries' no-change reruns, interleaved, on one local SeaweedFS.

    .venv/bin/python benches/ab_rerun.py NEW BASELINE [--objects N] [--runs R]

N objects of 4 KiB are backed up once by each binary into its own backup bucket; then each reruns the
backup R times with nothing changed, the two alternating who goes first. Prints every run's wall, CPU
(user+sys) and peak RSS, the medians and their ratios (NEW/BASELINE), and the destination requests of
the last rerun of each. compare.py's --baseline runs each rerun once, and the first rerun after the
backups pays a one-time cost (seen: +25 % wall for whichever goes first); the medians of interleaved runs
do not.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import PASSWORD, PASSWORD2, Server, measure, write_dataset  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("new")
    parser.add_argument("baseline")
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=6)
    args = parser.parse_args()
    rclone = shutil.which("rclone") or sys.exit("rclone is not installed: run scripts/setup")
    env = dict(os.environ)
    env.pop("AWS_CA_BUNDLE", None)
    server = Server()
    info = server.info
    work = tempfile.mkdtemp(prefix="s32s3-ab-")
    try:
        conf = os.path.join(work, "rclone.conf")
        with open(conf, "w") as f:
            f.write(f"[sw]\ntype = s3\nprovider = Other\nendpoint = {info['endpoint']}\n"
                    f"access_key_id = {info['access_key']}\nsecret_access_key = {info['secret_key']}\n"
                    "region = us-east-1\nforce_path_style = true\n")
        env["RCLONE_CONFIG"] = conf
        for bucket in ("src", "bk-new", "bk-baseline"):
            subprocess.run([rclone, "mkdir", f"sw:{bucket}"], env=env, check=True)
        local = os.path.join(work, "data")
        write_dataset(local, args.objects, 4096)
        subprocess.run([rclone, "copy", local, "sw:src", "--transfers", "16"], env=env, check=True)
        s32s3_env = dict(env, S32S3_SOURCE_ENDPOINT=info["endpoint"], S32S3_SOURCE_ACCESS_KEY_ID=info["access_key"],
                         S32S3_SOURCE_SECRET_ACCESS_KEY=info["secret_key"],
                         S32S3_DESTINATION_ENDPOINT=info["endpoint"],
                         S32S3_DESTINATION_ACCESS_KEY_ID=info["access_key"],
                         S32S3_DESTINATION_SECRET_ACCESS_KEY=info["secret_key"],
                         S32S3_CRYPT_PASSWORD=PASSWORD, S32S3_CRYPT_PASSWORD2=PASSWORD2, S32S3_LOG_LEVEL="warn")
        binaries = {"new": args.new, "baseline": args.baseline}
        runs = {"new": [], "baseline": []}

        def run(which):
            cmd = [binaries[which], "backup", "--json", "--bucket", "src"]
            return measure(cmd, dict(s32s3_env, S32S3_BACKUP_BUCKET=f"bk-{which}"))

        run("baseline")
        run("new")
        for i in range(args.runs):
            for which in (("new", "baseline") if i % 2 == 0 else ("baseline", "new")):
                runs[which].append(run(which))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    for which, measured in runs.items():
        row = lambda k, p: [round(m[k], p) for m in measured]  # noqa: E731
        print(f"{which:<9} wall {row('wall', 3)}  cpu {row('cpu', 3)}  rss {row('rss', 1)}")
    median = lambda which, k: statistics.median(m[k] for m in runs[which])  # noqa: E731
    for k, unit in (("wall", "s"), ("cpu", "s"), ("rss", "MiB")):
        new, base = median("new", k), median("baseline", k)
        print(f"median {k}: new {new:.3f} {unit}, baseline {base:.3f} {unit}, new/baseline {new / base:.3f}")
    for which, measured in runs.items():
        print(f"{which} destination requests:", json.loads(measured[-1]["stdout"])["requests"]["destination"])


if __name__ == "__main__":
    main()
