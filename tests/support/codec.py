"""A payload codec standing in for a user's encryption codec, and a converter that uses it."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Sequence

import temporalio.converter
from temporalio.api.common.v1 import Payload

ENCODING = b"binary/test-codec"


class ReversingCodec(temporalio.converter.PayloadCodec):
    """Wraps each payload (serialised, base64'd, reversed) so plain readers cannot decode it."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [
            Payload(
                metadata={"encoding": ENCODING},
                data=base64.b64encode(p.SerializeToString())[::-1],
            )
            for p in payloads
        ]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("encoding") != ENCODING:
                raise ValueError("payload was not encoded with the workers' codec")
            inner = Payload()
            inner.ParseFromString(base64.b64decode(p.data[::-1]))
            out.append(inner)
        return out


data_converter = dataclasses.replace(
    temporalio.converter.DataConverter.default, payload_codec=ReversingCodec()
)
