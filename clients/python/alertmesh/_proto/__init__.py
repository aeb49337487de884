"""Generated gRPC stubs of the alertmesh.v1 contract (see ``alertmesh._codegen``). Do not edit."""
