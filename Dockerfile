# Worker image for Dataflow custom containers and local runs, built on the
# official Beam Python SDK image of the pinned Beam version.
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python3.11_sdk:${BEAM_VERSION}

# cpu: torch's CPU wheels; gpu: the default (CUDA) wheels from PyPI.
ARG TORCH_VARIANT=cpu

WORKDIR /opt/feedback-annotate
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY scorers ./scorers
COPY schemas ./schemas

RUN if [ "$TORCH_VARIANT" = "cpu" ]; then \
        pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu; \
    fi \
    && pip install --no-cache-dir ".[toxicity,profanity]"
