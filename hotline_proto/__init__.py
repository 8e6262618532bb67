"""Generated protobuf modules (built from proto/hotline/*.proto; never edit by hand).

The import name is ``hotline_proto`` because proto-plus already owns a top-level ``proto``.
"""
