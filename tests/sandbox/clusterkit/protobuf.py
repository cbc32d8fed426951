"""Kubernetes protobuf request bodies for the few kinds kubectl's typed generators create: Namespace, ConfigMap, Secret.

`kubectl create namespace|configmap|secret` send `application/vnd.kubernetes.protobuf`: the 4-byte magic `k8s\\0`,
then a runtime.Unknown {typeMeta=1 {apiVersion=1, kind=2}, raw=2, contentEncoding=3, contentType=4} whose `raw` is
the object. Field numbers from k8s.io/api core/v1 generated.proto and k8s.io/apimachinery meta/v1 generated.proto
(ObjectMeta: name=1, generateName=2, namespace=3, labels=11, annotations=12, finalizers=14; Namespace: metadata=1,
spec=2 {finalizers=1}; ConfigMap: metadata=1, data=2, binaryData=3, immutable=4; Secret: metadata=1, data=2,
type=3, stringData=4, immutable=5). Other kinds, and fields the generators never set, are refused or skipped.
"""
import base64
from typing import Any, Iterator

MAGIC = b'k8s\x00'


class UnsupportedProtobuf(ValueError):
    """A body this decoder does not read; the message says what to send instead."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise UnsupportedProtobuf('truncated protobuf varint')
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value): an int for varints, bytes for length-delimited fields."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise UnsupportedProtobuf(f'unsupported protobuf wire type {wire}')
        yield number, value


def _entry(data: bytes) -> tuple[str, bytes]:
    key, value = '', b''
    for number, item in fields(data):
        if number == 1:
            key = item.decode()
        elif number == 2:
            value = item
    return key, value


def _metadata(data: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    names = {1: 'name', 2: 'generateName', 3: 'namespace'}
    for number, value in fields(data):
        if number in names:
            meta[names[number]] = value.decode()
        elif number in (11, 12):
            key, item = _entry(value)
            meta.setdefault('labels' if number == 11 else 'annotations', {})[key] = item.decode()
        elif number == 14:
            meta.setdefault('finalizers', []).append(value.decode())
    return meta


def _object(kind: str, raw: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for number, value in fields(raw):
        if number == 1:
            obj['metadata'] = _metadata(value)
        elif kind == 'Namespace' and number == 2:
            finalizers = [item.decode() for n, item in fields(value) if n == 1]
            obj['spec'] = {'finalizers': finalizers} if finalizers else {}
        elif kind in ('ConfigMap', 'Secret') and number == 2:
            key, item = _entry(value)
            text = item.decode() if kind == 'ConfigMap' else base64.b64encode(item).decode()
            obj.setdefault('data', {})[key] = text
        elif kind == 'ConfigMap' and number == 3:
            key, item = _entry(value)
            obj.setdefault('binaryData', {})[key] = base64.b64encode(item).decode()
        elif kind == 'Secret' and number == 3:
            obj['type'] = value.decode()
        elif kind == 'Secret' and number == 4:
            key, item = _entry(value)
            obj.setdefault('stringData', {})[key] = item.decode()
        elif (kind, number) in (('ConfigMap', 4), ('Secret', 5)):
            obj['immutable'] = bool(value)
    return obj


SUPPORTED = {('v1', 'Namespace'), ('v1', 'ConfigMap'), ('v1', 'Secret')}


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf Namespace, ConfigMap or Secret; UnsupportedProtobuf for anything else."""
    if not body.startswith(MAGIC):
        raise UnsupportedProtobuf('a protobuf body starts with the k8s\\0 magic')
    api_version = kind = ''
    raw = b''
    for number, value in fields(body[len(MAGIC):]):
        if number == 1:
            for n, item in fields(value):
                if n == 1:
                    api_version = item.decode()
                elif n == 2:
                    kind = item.decode()
        elif number == 2:
            raw = value
        elif number == 3 and value:
            raise UnsupportedProtobuf('compressed protobuf bodies are not supported')
    if (api_version, kind) not in SUPPORTED:
        raise UnsupportedProtobuf(f'protobuf bodies are read for v1 Namespace, ConfigMap and Secret only, not '
                                  f'{api_version or "?"} {kind or "?"}')
    obj = _object(kind, raw)
    obj['apiVersion'], obj['kind'] = api_version, kind
    return obj
