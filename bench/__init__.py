"""Benchmarks: layotto against a bare grpc.aio server and direct backend clients, in one run."""
