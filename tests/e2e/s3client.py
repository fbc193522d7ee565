"""A real S3 client (boto3) driven by mediagate's end-to-end tests and demo.

    python s3client.py COMMAND 'JSON ARGUMENTS'

prints one JSON object. S3 errors are results (`ok: false` with the status and the error
code the store returned), not failures of this script.
"""
import hashlib
import json
import os
import sys
import urllib.request

import boto3
import botocore.config
import botocore.exceptions
import urllib3


def client(args, creds, service="s3"):
    return boto3.client(
        service,
        endpoint_url=args["endpoint"],
        region_name=args.get("region", "us-east-1"),
        aws_access_key_id=creds["access_key_id"],
        aws_secret_access_key=creds["access_key_secret"],
        aws_session_token=creds.get("security_token"),
        config=botocore.config.Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            # No checksum trailers: plain SigV4 uploads, as most S3 clients in apps send.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def refused(e):
    return {
        "ok": False,
        "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
        "code": e.response["Error"]["Code"],
    }


# The first bytes of real files of each kind, for objects mediagate sniffs.
HEADERS = {
    "mp4": b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isommp41\x00\x00\x00\x08free",
    "mp3": b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64",
    "wav": b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x02\x00",
    "mkv": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04"
           b"\x42\xf3\x81\x08\x42\x82\x88matroska\x42\x87\x81\x04\x42\x85\x81\x02",
    "zip": b"PK\x03\x04\x14\x00\x00\x00\x08\x00",
    "random": b"",
}


def body_of(args):
    """`body` as given, the bytes of the local `file`, or `size` bytes of the kind `content`
    (default mp4): its real header, then random bytes."""
    if "body" in args:
        return args["body"].encode()
    if "file" in args:
        with open(args["file"], "rb") as f:
            return f.read()
    size = args.get("size", 1024)
    head = HEADERS[args.get("content", "mp4")]
    return (head + os.urandom(max(size - len(head), 0)))[:size]


def put(args):
    s3 = client(args, args["creds"])
    try:
        extra = {"ACL": args["acl"]} if "acl" in args else {}
        r = s3.put_object(
            Bucket=args["bucket"],
            Key=args["key"],
            Body=body_of(args),
            Metadata=args.get("metadata", {}),
            **extra,
        )
    except botocore.exceptions.ClientError as e:
        return refused(e)
    return {"ok": True, "etag": r["ETag"].strip('"')}


def get(args):
    """Reads the object whole, as a processor does: its size, ETag and the MD5 of its bytes."""
    s3 = client(args, args["creds"])
    try:
        r = s3.get_object(Bucket=args["bucket"], Key=args["key"])
        body = r["Body"].read()
    except botocore.exceptions.ClientError as e:
        return refused(e)
    return {"ok": True, "size": r["ContentLength"], "etag": r["ETag"].strip('"'),
            "md5": hashlib.md5(body).hexdigest()}


def head(args):
    s3 = client(args, args["creds"])
    try:
        r = s3.head_object(Bucket=args["bucket"], Key=args["key"])
    except botocore.exceptions.ClientError as e:
        return refused(e)
    return {"ok": True, "size": r["ContentLength"], "etag": r["ETag"].strip('"'),
            "metadata": r.get("Metadata", {})}


def refresh(spec):
    """New credentials for the same upload from mediagate, as an app would fetch them."""
    request = urllib.request.Request(
        spec["url"], method="POST", data=b"",
        headers={"Authorization": "Bearer " + spec["token"]},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.load(r)["credentials"]


def multipart(args):
    """Uploads `size_mib` MiB in `part_mib` parts; after `refresh_after_parts` parts it asks
    mediagate for fresh credentials and finishes the upload with them."""
    creds = args["creds"]
    s3 = client(args, creds)
    bucket, key = args["bucket"], args["key"]
    part_size = args["part_mib"] * 1024 * 1024
    count = args["size_mib"] // args["part_mib"]
    used = [creds["access_key_id"]]
    try:
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        parts = []
        for n in range(1, count + 1):
            if n == args.get("refresh_after_parts", 0) + 1 and "refresh" in args:
                creds = refresh(args["refresh"])
                used.append(creds["access_key_id"])
                s3 = client(args, creds)
            body = body_of({"size": part_size}) if n == 1 else os.urandom(part_size)
            r = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n,
                               Body=body)
            parts.append({"PartNumber": n, "ETag": r["ETag"]})
        listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
        done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                            MultipartUpload={"Parts": parts})
    except botocore.exceptions.ClientError as e:
        return dict(refused(e), access_keys=used)
    return {"ok": True, "parts": len(parts), "listed_parts": len(listed.get("Parts", [])),
            "etag": done["ETag"].strip('"'), "access_keys": used}


def post(args):
    """A browser-style form upload: every field, then the file last."""
    fields = list(args["fields"].items())
    fields.append(("file", ("upload.bin", body_of(args), "application/octet-stream")))
    r = urllib3.request("POST", args["url"], fields=fields, timeout=30)
    return {"ok": 200 <= r.status < 300, "status": r.status,
            "body": r.data.decode(errors="replace")[:2000]}


def setup(args):
    """As the store's owner: the buckets, and an SNS topic pushing object-created events of
    `notify` buckets to `push_endpoint`."""
    keys = args["admin"]
    s3 = client(args, keys)
    for bucket in args["buckets"]:
        s3.create_bucket(Bucket=bucket)
    if "push_endpoint" in args:
        sns = client(args, keys, "sns")
        topic = sns.create_topic(
            Name=args["topic"],
            Attributes={"push-endpoint": args["push_endpoint"], "persistent": "false"},
        )["TopicArn"]
        for bucket in args["notify"]:
            s3.put_bucket_notification_configuration(
                Bucket=bucket,
                NotificationConfiguration={"TopicConfigurations": [{
                    "Id": "mediagate", "TopicArn": topic, "Events": ["s3:ObjectCreated:*"],
                }]},
            )
    return {"ok": True}


COMMANDS = {"put": put, "get": get, "head": head, "multipart": multipart, "post": post,
            "setup": setup}

if __name__ == "__main__":
    print(json.dumps(COMMANDS[sys.argv[1]](json.loads(sys.argv[2]))))
