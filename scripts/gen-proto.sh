#!/bin/sh
# Regenerates python/tensorwasm_tc/tensorcast/_proto/ (or the directory given
# as the first argument) from proto/.
# Needs grpcio-tools (the test extra installs it); the generated files are
# committed, so running the package needs only grpcio and protobuf.
set -eu
cd "$(dirname "$0")/.."
out=${1:-python/tensorwasm_tc/tensorcast/_proto}
rm -rf "$out"
mkdir -p "$out"
python3 -m grpc_tools.protoc -I proto \
    --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    $(find proto -name '*.proto' | sort)
# protoc writes imports relative to proto/ ("from tensorcast.x import y");
# the package lives under tensorwasm_tc.tensorcast._proto.
find "$out" -name '*.py' -o -name '*.pyi' | while read -r f; do
    sed -i 's/^from tensorcast\./from tensorwasm_tc.tensorcast._proto.tensorcast./' "$f"
done
find "$out" -type d -exec sh -c 'for d; do [ -f "$d/__init__.py" ] || : > "$d/__init__.py"; done' sh {} +
