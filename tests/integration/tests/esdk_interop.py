#!/usr/bin/env python3
"""Encrypt or decrypt a file with the official AWS Encryption SDK for Python.

Used by crypto_interop.rs to prove that gc-archive's messages are real ESDK messages: whatever one
side writes, the other must read. Always uses message format 2 with key commitment
(AES_256_GCM_HKDF_SHA512_COMMIT_KEY) and the strictest commitment policy.

On decrypt, prints a JSON object to stdout: the encryption context, frame length, algorithm suite
id and, for framed bodies, the content length of the final frame as written by the encryptor.
"""

import argparse
import json
import os
import struct
import sys

import aws_encryption_sdk
from aws_encryption_sdk.identifiers import (
    Algorithm,
    CommitmentPolicy,
    EncryptionKeyType,
    WrappingAlgorithm,
)
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.internal.formatting.serialize import serialize_header
from aws_encryption_sdk.key_providers.raw import RawMasterKey


def key_provider(args):
    if args.raw_key_hex:
        return RawMasterKey(
            provider_id=args.namespace,
            key_id=args.key_name.encode("utf-8"),
            wrapping_key=WrappingKey(
                wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
                wrapping_key=bytes.fromhex(args.raw_key_hex),
                wrapping_key_type=EncryptionKeyType.SYMMETRIC,
            ),
        )
    if args.kms_key_id:
        import botocore.session

        # The legacy KMS provider builds its own clients and takes no endpoint; botocore honours
        # AWS_ENDPOINT_URL, which points it at moto.
        if args.endpoint_url:
            os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        os.environ.setdefault("AWS_DEFAULT_REGION", args.region)
        session = botocore.session.Session()
        return aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(
            key_ids=[args.kms_key_id], botocore_session=session
        )
    sys.exit("one of --raw-key-hex or --kms-key-id is required")


def final_frame_content_length(message, header_len, frame_length):
    """Walks the frames after the header (v2: body then a 16-byte tag, no IV) and returns the final
    frame's content length."""
    pos = header_len
    while True:
        (seq,) = struct.unpack_from(">I", message, pos)
        if seq == 0xFFFFFFFF:
            (length,) = struct.unpack_from(">I", message, pos + 4 + 4 + 12)
            return length
        pos += 4 + 12 + frame_length + 16


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("mode", choices=["encrypt", "decrypt"])
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--raw-key-hex")
    p.add_argument("--namespace", default="gc-archive")
    p.add_argument("--key-name", default="key")
    p.add_argument("--kms-key-id")
    p.add_argument("--endpoint-url")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--frame-length", type=int, default=4096)
    p.add_argument("--context", action="append", default=[], metavar="K=V")
    args = p.parse_args()

    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )
    provider = key_provider(args)
    with open(args.input, "rb") as f:
        data = f.read()

    if args.mode == "encrypt":
        context = dict(kv.split("=", 1) for kv in args.context)
        ciphertext, _header = client.encrypt(
            source=data,
            key_provider=provider,
            encryption_context=context,
            algorithm=Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
            frame_length=args.frame_length,
        )
        with open(args.output, "wb") as f:
            f.write(ciphertext)
        return

    with client.stream(mode="d", source=data, key_provider=provider) as decryptor:
        plaintext = decryptor.read()
        header = decryptor.header
    with open(args.output, "wb") as f:
        f.write(plaintext)
    report = {
        "encryption_context": header.encryption_context,
        "frame_length": header.frame_length,
        "algorithm": header.algorithm.algorithm_id,
        "version": int(header.version.value),
        "content_type": int(header.content_type.value),
        "final_frame_length": final_frame_content_length(
            data, len(serialize_header(header)) + 16, header.frame_length
        ),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
