#!/usr/bin/env sh
# Export the model repository for the Triton image (deployment/triton/build/models).
set -eu
cd "$(dirname "$0")/../.."
OUT=deployment/triton/build/models
rm -rf "$OUT"
.venv/bin/python -c "from inference.cli import models; models()" export --out "$OUT"
echo "now: docker build -f deployment/triton/Dockerfile -t digitalfront/triton:0.1.0 deployment/triton"
