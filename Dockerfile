# Worker image for Dataflow custom containers and local runs, built on the
# official Beam Python SDK image of the pinned Beam version. BEAM_VERSION must
# equal the apache-beam pin in pyproject.toml; tests/test_docker.py checks it.
#
#   docker build -t annotate-worker .                                  # CPU torch
#   docker build -t annotate-worker-gpu --build-arg TORCH_VARIANT=gpu .  # CUDA torch
#   docker build --build-arg DETOXIFY_MODEL=original -t annotate-worker .
#
# The image keeps the SDK image's entrypoint (/opt/apache/beam/boot), which a
# Beam runner starts; for a local run, override it: docker run --entrypoint annotate.
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python3.11_sdk:${BEAM_VERSION}

# cpu: torch's CPU-only wheels; gpu: the PyPI wheels with their CUDA libraries.
ARG TORCH_VARIANT=cpu
# A Detoxify model name (original, unbiased, multilingual, original-small,
# unbiased-small) to download into the image at build time; empty: none, and
# workers download the checkpoint on first use unless --toxicity-checkpoint is given.
ARG DETOXIFY_MODEL=

# Detoxify loads its checkpoint through torch.hub, cached under TORCH_HOME, and the
# base model's config and tokenizer through transformers, cached under HF_HOME.
ENV TORCH_HOME=/opt/torch HF_HOME=/opt/huggingface

WORKDIR /opt/feedback-annotate
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY scorers ./scorers
COPY schemas ./schemas
COPY docker/install.sh ./docker/install.sh

RUN sh docker/install.sh "$TORCH_VARIANT" .

RUN if [ -n "$DETOXIFY_MODEL" ]; then \
        python -c "from detoxify import Detoxify; Detoxify('$DETOXIFY_MODEL', device='cpu')"; \
    fi
