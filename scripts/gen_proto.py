"""Regenerate the Python gRPC code in gen/ from the .proto files in proto/ (`make proto`)."""

from __future__ import annotations

import pathlib
import sys

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "gen"


def main() -> int:
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    if not protos:
        print("no .proto files under proto/", file=sys.stderr)
        return 1
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={OUT_DIR}",
        f"--pyi_out={OUT_DIR}",
        f"--grpc_python_out={OUT_DIR}",
        *protos,
    ]
    rc = protoc.main(args)
    if rc != 0:
        return rc
    # Make every generated folder an importable package.
    for folder in {OUT_DIR / pathlib.Path(p).parent for p in protos}:
        while folder != OUT_DIR:
            (folder / "__init__.py").touch()
            folder = folder.parent
    print(f"generated {len(protos)} proto file(s) into {OUT_DIR.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
