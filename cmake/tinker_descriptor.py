"""Writes the wire schema of the pinned `tinker` SDK (tinker/proto/tinker_public.proto, as the
SDK itself compiled it) as a FileDescriptorSet, so protoc generates our C++ codec from exactly
the schema the client speaks. Usage: tinker_descriptor.py OUT.desc"""
import sys

from google.protobuf import descriptor_pb2
from tinker.proto import tinker_public_pb2

fd = descriptor_pb2.FileDescriptorProto.FromString(tinker_public_pb2.DESCRIPTOR.serialized_pb)
if fd.dependency:
    sys.exit(f"tinker_public.proto imports {list(fd.dependency)}; add them to the descriptor set")
with open(sys.argv[1], "wb") as f:
    f.write(descriptor_pb2.FileDescriptorSet(file=[fd]).SerializeToString())
