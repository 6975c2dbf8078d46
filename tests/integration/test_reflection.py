"""Server reflection the way grpcurl uses it (ServerReflection v1alpha): list services, then fetch the file
that defines paligemma.v1.SegmentService and describe Segment from the FileDescriptorProtos alone, then
call it with a message built from those descriptors (no generated code for the API)."""

import unittest

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

import harness
import reflection_pb2


class ReflectionTest(harness.ServerTestCase):
    def reflect(self, requests):
        call = self.server.channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        return list(call(iter(requests), timeout=10))

    def test_list_services(self):
        (r,) = self.reflect([reflection_pb2.ServerReflectionRequest(list_services="")])
        names = {s.name for s in r.list_services_response.service}
        for expected in ("paligemma.v1.SegmentService", "paligemma.v1.ModelService",
                         "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"):
            self.assertIn(expected, names)

    def test_describe_segment_and_call_it(self):
        (r,) = self.reflect([reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="paligemma.v1.SegmentService")])
        pool = descriptor_pool.DescriptorPool()
        protos = [descriptor_pb2.FileDescriptorProto.FromString(b)
                  for b in r.file_descriptor_response.file_descriptor_proto]
        names = {p.name for p in protos}
        self.assertIn("paligemma/v1/paligemma.proto", names)
        # Dependencies (google/api/annotations.proto, ...) come along, as grpcurl needs them.
        self.assertIn("google/api/annotations.proto", names)
        pending = list(protos)
        while pending:  # add in dependency order
            for p in list(pending):
                if all(d in {f.name for f in protos if f not in pending} or d == "google/protobuf/descriptor.proto"
                       for d in p.dependency):
                    try:
                        pool.Add(p)
                    except TypeError:
                        pool.AddSerializedFile(p.SerializeToString())
                    pending.remove(p)
        service = pool.FindServiceByName("paligemma.v1.SegmentService")
        method = service.FindMethodByName("Segment")
        self.assertEqual(method.input_type.full_name, "paligemma.v1.SegmentRequest")
        self.assertEqual(method.output_type.full_name, "paligemma.v1.SegmentResponse")
        fields = {f.name for f in method.input_type.fields}
        self.assertTrue({"prompt", "image_data", "image_url", "model_id", "max_new_tokens", "options"} <= fields)
        out_fields = {f.name for f in method.output_type.fields}
        self.assertTrue({"image", "masks", "text", "model_id", "timings"} <= out_fields)
        mask_fields = {f.name for f in pool.FindMessageTypeByName("paligemma.v1.ObjectMask").fields}
        self.assertTrue({"mask", "coordinates", "label", "box", "full_mask"} <= mask_fields)

        Request = message_factory.MessageFactory(pool).GetPrototype(method.input_type)
        Response = message_factory.MessageFactory(pool).GetPrototype(method.output_type)
        call = self.server.channel.unary_unary("/paligemma.v1.SegmentService/Segment",
                                               request_serializer=Request.SerializeToString,
                                               response_deserializer=Response.FromString)
        resp = call(Request(prompt="segment cat", image_data=harness.read_image(), max_new_tokens=4),
                    timeout=60)
        self.assertEqual(resp.model_id, "tiny")


if __name__ == "__main__":
    unittest.main()
