#!/usr/bin/env python3
"""Sample data for scripts/demo: fill a store, or print a digest of everything in it.

    demo_data.py fill   ENDPOINT ACCESS SECRET        three buckets with settings, metadata, tags
    demo_data.py change ENDPOINT ACCESS SECRET        change, delete and add a few objects
    demo_data.py digest ENDPOINT ACCESS SECRET        one line per object: bucket/key sha256 metadata tags
"""

import hashlib
import json
import os
import sys

import boto3
from botocore.config import Config


def client(endpoint, access, secret):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
                        region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                                      response_checksum_validation="when_required"))


def fill(s3):
    s3.create_bucket(Bucket="photos")
    s3.put_bucket_versioning(Bucket="photos", VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_tagging(Bucket="photos", Tagging={"TagSet": [{"Key": "team", "Value": "media"}]})
    for i in range(40):
        s3.put_object(Bucket="photos", Key=f"2026/11/img-{i:03d}.jpg", Body=os.urandom(20_000 + i * 1000),
                      ContentType="image/jpeg", Metadata={"camera": "x100", "index": str(i)},
                      Tagging=f"album=autumn&n={i}")
    s3.create_bucket(Bucket="invoices")
    for i in range(25):
        s3.put_object(Bucket="invoices", Key=f"customers/ü-{i}/invoice {i}.pdf", Body=os.urandom(5000),
                      ContentType="application/pdf", ContentDisposition=f'attachment; filename="invoice-{i}.pdf"')
    s3.create_bucket(Bucket="archive")
    s3.put_object(Bucket="archive", Key="db/dump.sql.gz", Body=os.urandom(24 << 20), ContentEncoding="gzip")
    s3.put_object(Bucket="archive", Key="empty-marker", Body=b"")


def change(s3):
    s3.put_object(Bucket="photos", Key="2026/11/img-000.jpg", Body=os.urandom(30_000), ContentType="image/jpeg")
    s3.delete_object(Bucket="photos", Key="2026/11/img-001.jpg")
    s3.put_object(Bucket="invoices", Key="customers/new/invoice 99.pdf", Body=os.urandom(6000))


def digest(s3):
    lines = []
    for bucket in sorted(b["Name"] for b in s3.list_buckets()["Buckets"]):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                got = s3.get_object(Bucket=bucket, Key=obj["Key"])
                body = got["Body"].read()
                tags = s3.get_object_tagging(Bucket=bucket, Key=obj["Key"])["TagSet"]
                lines.append(json.dumps([bucket, obj["Key"], hashlib.sha256(body).hexdigest(), got.get("ContentType"),
                                         got.get("Metadata"), sorted((t["Key"], t["Value"]) for t in tags)]))
    return sorted(lines)


def main():
    command, endpoint, access, secret = sys.argv[1:5]
    s3 = client(endpoint, access, secret)
    if command == "fill":
        fill(s3)
    elif command == "change":
        change(s3)
    elif command == "digest":
        print("\n".join(digest(s3)))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
